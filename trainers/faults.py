"""What the training loop does when something goes wrong: signals, non-finite values, debris.

- **SIGINT / SIGTERM** (:class:`StopSignals`): the first one only sets a flag; the loop
  finishes the iteration, writes a snapshot at that step and raises :class:`Interrupted`
  (the CLI exits 130 for SIGINT, 143 for SIGTERM). A second signal acts as usual.
- **Non-finite values** (``on_nonfinite``): ``stop`` checks the logged losses at every log
  window and the losses, weights and buffers before every snapshot (where the loop syncs
  anyway: no extra host sync per step), so a snapshot never holds NaN/inf and the error names
  the last good one. ``skip`` wraps the optimizers in :class:`SkipNonFinite`, which checks the
  gradients before each ``step()`` and skips the update when any is NaN/inf (like
  ``torch.amp.GradScaler``; on CUDA this is one host sync per optimizer step); BatchNorm
  buffers touched by a skipped iteration are restored.
- **Debris**: ``.tmp-*`` files left by a process killed mid-write are removed at start-up
  (:func:`remove_partial_files`); readers ignore them anyway.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch
from torch import nn

# consecutive skipped iterations after which `skip` gives up: the run has diverged for good
SKIP_LIMIT = 100


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal after writing a snapshot.

    Attributes:
        signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
        step: iterations completed.
        snapshot: the snapshot written (or already present) at ``step``.
    """

    def __init__(self, signum: int, step: int, snapshot: Path | None):
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}; snapshot {snapshot}")
        self.signum, self.step, self.snapshot = signum, step, snapshot


class StopSignals:
    """Context manager: SIGINT/SIGTERM request a clean stop instead of killing the process.

    Only the main thread can install handlers; elsewhere this is a no-op (``signum`` stays
    None). The previous handlers come back on exit, and on a second signal.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            # a signal the parent set to "ignore" (nohup, background jobs) stays ignored
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS
                         if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: the user means it
            self._restore()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def _restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def __exit__(self, *exc) -> None:
        self._restore()


class SkipNonFinite:
    """An optimizer whose ``step()`` does nothing when a gradient is non-finite.

    Args:
        opt: the wrapped optimizer (its state dict is what snapshots store).

    ``skipped`` counts skipped steps (read and reset by the loop).
    """

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt, self.skipped = opt, 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        grads = [p.grad for group in self.opt.param_groups for p in group["params"]
                 if p.grad is not None]
        # isfinite per tensor, not a norm: a large finite gradient must not overflow to inf
        if grads and not bool(torch.stack([g.isfinite().all() for g in grads]).all()):
            self.skipped += 1
            return
        self.opt.step()


def all_buffers(*nets: nn.Module) -> list[torch.Tensor]:
    """Every buffer of ``nets`` (BatchNorm statistics and counters, spectral-norm vectors)."""
    return [b for net in nets for b in net.buffers()]


def nonfinite_names(**nets: nn.Module) -> list[str]:
    """Names (``G.<param>``) of parameters and buffers holding NaN or inf."""
    bad = []
    for prefix, net in nets.items():
        for name, t in net.state_dict().items():
            if t.is_floating_point() and not bool(t.isfinite().all()):
                bad.append(f"{prefix}.{name}")
    return bad


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete ``.tmp-*`` files of interrupted atomic writes in ``run_dir`` (and samples/)."""
    removed = []
    for folder in (run_dir, run_dir / "samples"):
        if folder.is_dir():
            for p in folder.glob(".tmp-*"):
                try:
                    p.unlink(missing_ok=True)
                    removed.append(p)
                except OSError:  # read-only now: harmless, readers ignore them
                    pass
    return removed
