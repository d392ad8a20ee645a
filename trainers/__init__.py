"""asgan-probe trainers: data, nets, baseline and AS-GAN training, safe checkpoints.

Entry points: :func:`make_config` + :func:`train` (or the ``asgan-train`` CLI) and
:func:`load_checkpoint`, the one reader of snapshots.
"""

from asgan_base.errors import UserError
from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.config import PRESETS, TrainConfig, make_config


def train(*args, **kwargs):
    """See :func:`trainers.loop.train` (imported lazily: data and nets load on first use)."""
    from trainers.loop import train as _train

    return _train(*args, **kwargs)


__all__ = ["PRESETS", "TrainConfig", "UserError", "load_checkpoint", "make_config",
           "save_checkpoint", "train"]
