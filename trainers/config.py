"""Training configuration: one frozen dataclass, named presets, validated overrides.

Every field reaches the code (a test checks that each is read in ``trainers/``). ``eps`` is in
the data's eps unit (``eps_unit``, SPEC section 1): on images [0, 1] *pixel units* (1/255 = one
grey level, a step of ``eps * (hi - lo)``); on the 2-D mixtures *mode-std* units (1 = one
standard deviation of a mode: 0.01 on ring8, 0.05 on grid25, a step of ``eps * std`` per
coordinate), so eps means the same on both and a sweep up to 1.5 stays inside the coverage
metric's 3-std radius. Each checkpoint records the unit and its scale (``eps_unit``,
``eps_scale``) and every probe converts with them. The paper's "eps = 1/255" was applied by
the authors' script in [-1, 1] space, i.e. 0.5/255 in our units: the ``paper-cifar10`` preset
uses 0.5/255.

``split`` chooses the training data: ``auto`` (default) trains on the fixed train part where
the dataset has one (mnist10k: 9,000 of the digit classifier's 9,000 / 1,000 split;
stacked-mnist: triples of those 9,000 digits; ring8/grid25: the seeded sample set as before,
with fresh samples of another seed stream as the held-out part) and on all of it otherwise;
``train`` insists on the train part; ``none`` uses every sample (runs before splits existed).
The split is recorded in the checkpoint, and the probes take their reals from the held-out part.

The study's arms are field values on top of a preset: ``baseline``; AS-GAN (``trainer=asgan``,
``eps``); ``twice`` (``trainer=asgan perturbation=none``: D updated twice, eps 0);
``gaussian``; ``r1`` (``trainer=baseline r1_gamma=G``: one D step); ``r1-twice``
(``trainer=asgan perturbation=none r1_gamma=G``: two identical R1 steps per iteration, as many
D updates as AS-GAN); ``first-order`` (``trainer=asgan perturbation=first-order``, same eps:
the second step on clean reals with the first-order model of the loss at the FGSM point);
``sn`` (``d_spectral_norm=true``; the dcgan D then has no BatchNorm).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from asgan_base.errors import UserError

TRAINERS = ("baseline", "asgan")
PERTURBATIONS = ("fgsm", "gaussian", "none", "first-order")
SECOND_STEPS = ("real+fake", "real")
ATTACK_MODES = ("train", "eval")
DEVICES = ("auto", "cpu", "cuda")
ON_NONFINITE = ("stop", "skip")
SPLITS = ("auto", "train", "none")
EPS_UNIT_CHOICES = ("auto", "pixel", "mode-std")


def _field(default: Any, help: str) -> Any:
    """A config field with its help text (units included): the one place it is written;
    ``asgan-train --help`` shows it (:func:`field_help`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    # data and nets
    data: str = _field("mnist10k", "dataset (trainers.data): mnist10k | stacked-mnist | "
                       "fashion-mnist | digits | ring8 | grid25 | cifar10 | celeba | lsun | "
                       "imagefolder")
    split: str = _field("auto", "auto | train | none: train on the dataset's train part where "
                        "it has one (auto), insist on it (train) or use every sample (none)")
    data_root: str | None = _field(None, "folder for user data (cifar10, celeba, lsun, "
                                   "imagefolder; fashion-mnist without the Debian package)")
    resolution: int | None = _field(None, "image side in px (none: the dataset's native size)")
    arch: str = _field("dcgan", "dcgan | resnet | mlp")
    width: int | None = _field(None, "base channel / hidden width (none: the arch default)")
    d_width: int | None = _field(None, "D's base width when it differs from G's, e.g. a "
                                 "stronger D (none: width)")
    z_dim: int = _field(100, "latent dimension (z ~ N(0, I))")
    d_spectral_norm: bool = _field(False, "spectral norm on every D weight (Miyato et al. 2018)")
    # optimisation (Adam 2e-4, beta1 0.5: Radford et al.)
    steps: int = _field(2000, "total G updates (iterations)")
    batch_size: int = _field(64, "samples per iteration (the global batch with --nproc)")
    lr_g: float = _field(2e-4, "Adam learning rate of G")
    lr_d: float = _field(2e-4, "Adam learning rate of D")
    beta1: float = _field(0.5, "Adam beta1, in [0, 1)")
    beta2: float = _field(0.999, "Adam beta2, in [0, 1)")
    r1_gamma: float = _field(0.0, "R1 penalty weight on reals (Mescheder et al. 2018); 0 = off")
    # AS-GAN (SPEC section 2)
    trainer: str = _field("baseline", "baseline | asgan: differ only in the D step")
    eps: float = _field(1 / 255, "FGSM step on reals, in eps_unit: images [0, 1] pixel units "
                        "(1/255 = one grey level), 2-D mixtures mode-std units (1 = one std of "
                        "a mode); a number or a fraction such as 1/255")
    eps_unit: str = _field("auto", "auto (ring8/grid25: mode-std, else pixel) | pixel | mode-std")
    eps_warmup: int = _field(0, "iterations with eps = 0 at the start")
    eps_epoch_off: int = _field(0, "batches with eps = 0 at each epoch start (authors' "
                                "script: 300)")
    perturbation: str = _field("fgsm", "fgsm | gaussian (sign of N(0, I)) | none (D updated "
                               "twice) | first-order (second step on clean reals + the "
                               "first-order model of the loss at the FGSM point: "
                               "trainers/steps.py)")
    second_step: str = _field("real+fake", "real+fake (paper Eq. 9) | real (authors' script)")
    attack_mode: str = _field("train", "train: gradient of the D step itself | eval: running "
                              "BN stats")
    # bookkeeping
    seed: int = _field(0, "seeds the nets, the data order and every random draw of a run")
    device: str = _field("auto", "auto | cpu | cuda")
    sync_bn: bool = _field(False, "multi-process runs: BatchNorm statistics over the global "
                           "batch")
    on_nonfinite: str = _field("stop", "stop: error naming the last good snapshot | skip: skip "
                               "the step")
    log_every: int = _field(50, "iterations between stats.jsonl lines")
    sample_every: int = _field(500, "iterations between sample grids (0 = only at the end)")
    snapshot_every: int = _field(1000, "iterations between ckpt-<step> snapshots (and at the "
                                 "end; 0 = only at the end)")
    keep_snapshots: int = _field(0, "keep only the newest k snapshots (0 = keep all)")
    tensorboard: bool = _field(True, "write TensorBoard events to RUN_DIR/tb")
    channels_last: bool = _field(False, "NHWC nets and reals: 0.73-0.92x the CPU time (bench/)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on a laptop CPU: the loop end to end, tiny nets
    "smoke": dict(data="mnist10k", arch="dcgan", width=8, z_dim=16, steps=20, batch_size=16,
                  log_every=5, sample_every=10, snapshot_every=10, tensorboard=False),
    # the embedded default: minutes on 2 CPU cores. The study presets name split="train"
    # (the default, auto, would too) so their probes' held-out reals are never trained on.
    "mnist10k-dcgan": dict(data="mnist10k", split="train", arch="dcgan", resolution=32,
                           width=32, z_dim=64, steps=2000, batch_size=64, eps=1 / 255,
                           log_every=50, sample_every=500, snapshot_every=500),
    # 2-D eps in mode-std units: 0.5 std per coordinate (0.71 std in L2), well inside 3 std
    "ring8-mlp": dict(data="ring8", split="train", arch="mlp", width=128, z_dim=2, steps=3000,
                      batch_size=256, lr_g=1e-3, lr_d=1e-3, eps=0.5, log_every=100,
                      sample_every=1000, snapshot_every=1000),
    "grid25-mlp": dict(data="grid25", split="train", arch="mlp", width=256, z_dim=2,
                       steps=4000, batch_size=256, lr_g=1e-3, lr_d=1e-3, eps=0.5,
                       log_every=100, sample_every=1000, snapshot_every=1000),
    "cifar10-dcgan": dict(data="cifar10", arch="dcgan", resolution=32, width=64, z_dim=100,
                          steps=100_000, batch_size=64, eps=1 / 255, log_every=100,
                          sample_every=2000, snapshot_every=5000),
    # the paper's setting (Appendix F / authors' script): their 1/255 in [-1, 1] space is
    # 0.5/255 in our pixel units; eps off for the first 300 batches of every epoch;
    # second step on reals only, as in their script.
    "paper-cifar10": dict(data="cifar10", arch="dcgan", resolution=32, width=64, z_dim=100,
                          steps=78_200, batch_size=64, trainer="asgan", eps=0.5 / 255,
                          eps_epoch_off=300, second_step="real", log_every=100,
                          sample_every=2000, snapshot_every=7820),
}

_CHOICES = {
    "trainer": TRAINERS,
    "perturbation": PERTURBATIONS,
    "second_step": SECOND_STEPS,
    "attack_mode": ATTACK_MODES,
    "device": DEVICES,
    "on_nonfinite": ON_NONFINITE,
    "split": SPLITS,
    "eps_unit": EPS_UNIT_CHOICES,
}


# sanity ceilings: a typo like --width 64000000 should be an error, not a 10^15-byte tensor
_LIMITS = {"width": 2**16, "d_width": 2**16, "z_dim": 2**16, "resolution": 2**12,
           "batch_size": 2**24, "seed": 2**63 - 1}


def parse_eps(text: str | float, unit: str = "pixel") -> float:
    """``"1/255"``, ``"0.5/255"``, ``"1.5"`` or a float -> float in ``unit`` (a UserError
    outside its range): [0, 1] for ``"pixel"``, a finite value >= 0 for ``"mode-std"`` (a
    multiple of a mode's std; the upper end depends on the mixture, checked by the probes
    against the checkpoint's recorded unit). Parsing: :mod:`asgan_base.eps`."""
    from asgan_base.eps import EpsUnit, parse_number

    value = parse_number(text)
    return value if unit == "mode-std" else EpsUnit(unit).check(value)


def field_types() -> dict[str, Any]:
    return {f.name: f.type for f in fields(TrainConfig)}


def coerce(name: str, value: Any) -> Any:
    """Turn a CLI string or JSON value into the field's type, or raise UserError."""
    kind = field_types()[name]
    if value is None:
        if "None" in str(kind):
            return None
        raise UserError(f"{name} cannot be empty")
    if name == "eps":  # the unit depends on the data: validate() checks the range
        return parse_eps(value, unit="mode-std")
    try:
        if str(kind).startswith("bool"):
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if str(kind).startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if str(kind).startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"bad value for {name}: {value!r} (expected {kind})") from None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise UserError for values no run can use; return ``cfg`` unchanged otherwise."""
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise UserError(f"{name} must be one of {', '.join(choices)}; got "
                            f"{getattr(cfg, name)!r}")
    positive = ("steps", "batch_size", "z_dim", "log_every")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise UserError(f"{name} must be > 0, got {getattr(cfg, name)}")
    nonneg = ("eps_warmup", "eps_epoch_off", "sample_every", "snapshot_every", "keep_snapshots",
              "r1_gamma", "seed")
    for name in nonneg:
        if getattr(cfg, name) < 0:
            raise UserError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{f.name} must be a finite number, got {value}")
    for name in ("lr_g", "lr_d"):
        if not getattr(cfg, name) > 0:
            raise UserError(f"{name} must be > 0, got {getattr(cfg, name)}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise UserError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    from trainers.data import resolve_eps_unit, training_part  # lazy: it imports torch

    training_part(cfg.data, cfg.split)  # split=train on data without a split: UserError
    parse_eps(cfg.eps, unit=resolve_eps_unit(cfg.data, cfg.eps_unit))
    if cfg.perturbation == "first-order" and cfg.attack_mode == "eval":
        raise UserError("perturbation=first-order takes its gradient with batch statistics, as "
                        "the training FGSM does; attack_mode=eval applies to fgsm only")
    for name in ("width", "d_width"):
        if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
            raise UserError(f"{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.resolution is not None and cfg.resolution <= 0:
        raise UserError(f"resolution must be > 0, got {cfg.resolution}")
    for name, top in _LIMITS.items():
        value = getattr(cfg, name)
        if value is not None and value > top:
            raise UserError(f"{name}={value} is beyond what any run can use (max {top})")
    return cfg


def make_config(preset: str | None = None, overrides: dict[str, Any] | None = None
                ) -> TrainConfig:
    """Defaults <- preset <- overrides; unknown keys and bad values raise UserError."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    known = field_types()
    for key, value in (overrides or {}).items():
        if key not in known:
            raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(known)}")
        values[key] = coerce(key, value)
    return validate(TrainConfig(**values))


# what a stored config without a field meant: runs from before the field trained on all of
# their data, with eps in pixel units of pixel_range (on 2-D data: of the plotting box)
LEGACY = {"split": "none", "eps_unit": "pixel"}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config stored in a checkpoint or ``config.json`` (unknown keys rejected).

    A field the stored config lacks takes its meaning from before the field (``LEGACY``),
    not today's default, so a resumed old run goes on exactly as it started.
    """
    if not isinstance(d, dict):
        raise UserError("stored config is not a JSON object")
    return make_config(None, {**LEGACY, **d})


def save_config(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)


def config_fields() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def field_help() -> dict[str, str]:
    """Each field's help text (units included) and default, as ``asgan-train --help`` shows
    it: ``"<help> (default: <value>)"``."""
    return {f.name: f"{f.metadata['help']} (default: {_shown(f.default)})"
            for f in fields(TrainConfig)}


def _shown(value: Any) -> str:
    """A default as a user would type it: ``none``, ``true``, ``1/255`` for whole grey levels."""
    if value is None or isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and 0 < value < 1 and round(value * 255) >= 1 \
            and math.isclose(value * 255, round(value * 255)):
        return f"{round(value * 255)}/255"
    return str(value)
