"""asgan-probe's base: what the trainers and the probes both stand on, and nothing else.

==============  ==========================================================================
module          what lives there
==============  ==========================================================================
``errors``      ``UserError`` (one line, exit 2, no traceback) and the CLIs' one-line parser
``files``       atomic writes (temp file, fsync, rename) and a file's SHA-256
``lock``        the run folder's one-writer lock and lock-guarded builds
``device``      ``--device auto | cpu | cuda`` to a ``torch.device``
``manifest``    ``checkpoints/MANIFEST.json``: where shipped files are, their hashes and commands
``eps``         eps units: parse ``0.5/255``, convert, label (pixels or a mode's std)
``linf``        the L-inf step and eps conversion AS-GAN's trainer and the probes' FGSM share
``figures``     the one palette and the one way to make and save a matplotlib figure
==============  ==========================================================================

It imports neither ``trainers`` nor ``probes`` (``tests/test_layers.py``); ``trainers`` never
imports ``probes``, and ``probes`` reaches ``trainers`` through :mod:`probes.io.edge` only.
"""
