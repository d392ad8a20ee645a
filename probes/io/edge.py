"""The one edge from the probes to the trainers.

The probes stand on :mod:`asgan_base` (errors, atomic files, the run lock, device choice, the
manifest, eps units, the L-inf step) like the trainers do; what they take from the trainers
themselves is what only the trainers define, and it all comes through this module:

- our checkpoint format (:mod:`trainers.checkpoint`): reading snapshots and listing them, to
  probe a run we trained and to ship a study's weights;
- our nets (:mod:`trainers.nets`): rebuilding a D or G from the spec a checkpoint records;
- our data (:mod:`trainers.data`): the registry, the train / held-out split the probes take
  their reals from, the 2-D mixtures' modes, eps units per dataset;
- the training config (:mod:`trainers.config`): a study plan checks its arms' options with the
  trainer's own parser;
- where the trainers' source is (``TRAINERS_DIR``): a cached measurement is keyed by the code
  that rebuilt and ran the nets.

``trainers`` never imports ``probes`` (``tests/test_layers.py`` checks both directions), so the
dependency has one direction and one door.
"""

from pathlib import Path

import trainers
from trainers.checkpoint import (
    HALF_MIN_NUMEL,
    MAX_HEADER,
    export_snapshot,
    list_snapshots,
    load_checkpoint,
    read_checkpoint,
    snapshot_name,
    tensor_digest,
)
from trainers.config import make_config
from trainers.data import (
    MNIST10K_SPLIT,
    canonical_name,
    check_split,
    eps_unit_of_config,
    grid25_modes,
    load_dataset,
    mnist10k_split,
    resolve_eps_unit,
    ring8_modes,
    split_of,
)
from trainers.nets import ARCHS, build_net, config_specs

TRAINERS_DIR = Path(trainers.__file__).parent

__all__ = [
    "ARCHS", "HALF_MIN_NUMEL", "MAX_HEADER", "MNIST10K_SPLIT", "build_net", "canonical_name",
    "check_split", "config_specs", "eps_unit_of_config", "export_snapshot", "grid25_modes",
    "list_snapshots", "load_checkpoint", "load_dataset", "make_config", "mnist10k_split",
    "read_checkpoint", "resolve_eps_unit", "ring8_modes", "snapshot_name", "split_of",
    "tensor_digest", "TRAINERS_DIR",
]
