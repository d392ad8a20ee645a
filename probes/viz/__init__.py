"""Figures of the probes and the study, made by :func:`asgan_base.figures.figure` (a
``matplotlib.figure.Figure``: the global backend is never changed) in the colours of
:data:`asgan_base.figures.PALETTE`. Every figure reaches disk through :func:`save_figure`:
rendered in memory, then written atomically (temp file, fsync, rename), so a killed run or
two runs writing one path never leave a torn image."""
