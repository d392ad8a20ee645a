"""One module per ``asgan-probe`` verb (see :mod:`probes.cli`); shared helpers in ``_common``."""
