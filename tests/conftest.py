"""Shared fixtures: tiny analytic discriminators and a deterministic, CPU-only torch."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("MPLBACKEND", "Agg")
# one thread: tiny nets run fastest single-threaded, and OpenMP spin-waits make 2 threads
# up to 30x slower when another process (an xdist worker) shares the 2 cores
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


class LinearD(nn.Module):
    """``D(x) = <w, x> + b`` per sample: FGSM has a closed form on it."""

    def __init__(self, shape=(1, 4, 4), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(shape, generator=g))
        self.b = nn.Parameter(torch.tensor(0.1))

    def forward(self, x):  # (N, *shape) -> (N,)
        return (x * self.w).flatten(1).sum(1) + self.b


class BNConvD(nn.Module):
    """A small DCGAN-like D with BatchNorm (and optional spectral norm)."""

    def __init__(self, channels=1, width=8, spectral=False):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2), nn.Flatten(), sn(nn.Linear(2 * width * 4 * 4, 1)))

    def forward(self, x):  # (N, C, 16, 16) -> (N,)
        return self.net(x).flatten()


@pytest.fixture
def linear_d():
    return LinearD()


@pytest.fixture
def bn_d():
    torch.manual_seed(0)
    return BNConvD()


@pytest.fixture
def images():
    """(8, 1, 16, 16) in [-1, 1]."""
    return torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def run_cli(main, argv, capsys) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of a CLI ``main(argv)``, argparse's exits included."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node SLURM cluster (tests/slurm_cluster.py), started once per session
    (per xdist worker) and stopped at its end. Skips, saying why, only where the machine
    cannot start the daemons (not root, Debian packages missing: ``.ci/run`` installs them)."""
    import shutil
    import tempfile

    from tests.slurm_cluster import cannot_start, start

    why = cannot_start()
    if why:
        pytest.skip(why)
    # a folder of its own, not under pytest's basetemp: another pytest session of the same user
    # prunes old basetemps, which would delete the daemons' state under them
    root = tempfile.mkdtemp(prefix="asgan-slurm-")
    try:
        cluster = start(root)
        yield cluster
        cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
