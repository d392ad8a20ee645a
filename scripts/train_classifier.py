"""Train and ship the digit classifier used by ``asgan-probe coverage`` and ``quality``.

What it does: trains :class:`probes.adapters.classifier.DigitCNN` on ``mnist10k`` (the embedded
first
10,000 MNIST training digits) with a fixed split: ``perm = torch.randperm(10000,
generator=torch.Generator().manual_seed(0))``; the first 9,000 indices train, the last 1,000
are held out and never seen in training. It reports the held-out accuracy, refuses to ship a
classifier below 97 %, writes ``checkpoints/shipped/classifier/mnist10k-cnn.safetensors``
(weights + a JSON header with the architecture, split, accuracies and this command) and records
it in ``checkpoints/MANIFEST.json`` (``asgan_base.manifest.record``).

Usage (a few minutes on one CPU core)::

    OMP_NUM_THREADS=1 python scripts/train_classifier.py            # the shipped file
    python scripts/train_classifier.py --out /tmp/cnn.safetensors --no-record --epochs 1

Bit-identical weights need the same torch version and thread count; the accuracy is what the
test (tests/test_classifier.py) re-measures and compares.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes.adapters.classifier import (  # noqa: E402
    FEATURE_DIM,
    SHIPPED_FOR,
    SPLIT,
    accuracy,
    heldout_split,
    save_classifier,
    train_classifier,
)
from trainers.data import MNIST10K_SHA256, read_mnist10k  # noqa: E402

# refuse to ship below these held-out accuracies (Fashion-MNIST: a small CNN reaches ~0.90-0.92,
# the benchmark's CNNs 0.91-0.93; zalandoresearch/fashion-mnist benchmark/baselines.json)
MIN_ACCURACY = {"mnist10k": 0.97, "fashion-mnist": 0.88}


def _load(data: str):
    """(x [-1, 1] (N, 1, 28, 28), y, train_idx, held_idx, data record, split record)."""
    if data == "mnist10k":
        images, labels = read_mnist10k()  # uint8 (10000, 28, 28), SHA-256 checked
        x = torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)
        train_idx, held_idx = heldout_split()  # the fixed split (seed 0): 9,000 / 1,000
        split = dict(SPLIT, rule="perm = torch.randperm(n, generator=torch.Generator()"
                                 ".manual_seed(seed)); train = perm[:n - n_heldout], "
                                 "heldout = perm[n - n_heldout:]")
        return (x, torch.from_numpy(labels).long(), train_idx, held_idx,
                {"name": "mnist10k", "sha256": MNIST10K_SHA256}, split)
    from trainers.data import load_dataset

    tr, he = (load_dataset(data, part=p) for p in ("train", "heldout"))
    x = torch.cat([tr.get(torch.arange(tr.n)), he.get(torch.arange(he.n))])
    y = torch.cat([tr.labels, he.labels]).long()
    rec = he.info["split"]
    split = {"n": tr.n + he.n, "n_heldout": he.n, "seed": None, "rule": rec["rule"],
             "heldout_sha256": rec["heldout_sha256"]}
    return (x, y, torch.arange(tr.n), torch.arange(tr.n, tr.n + he.n),
            {"name": data, "source": tr.info["source"]}, split)


def _parser() -> argparse.ArgumentParser:
    """The command line (module docstring: Usage)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--shift", type=int, default=2, help="random translation augmentation, px")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="initialisation, shuffles and shifts")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--data", choices=tuple(SHIPPED_FOR), default="mnist10k",
                   help="mnist10k (its fixed 9,000 / 1,000 split) or fashion-mnist (the "
                        "official 60,000 / 10,000 train / test split, Debian's package)")
    p.add_argument("--out", default=None, help="default: the shipped file of --data")
    p.add_argument("--no-record", action="store_true", help="do not touch MANIFEST.json")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)

    x, y, train_idx, held_idx, data_rec, split = _load(args.data)
    out_path = args.out or str(ROOT / SHIPPED_FOR[args.data])
    t0 = time.perf_counter()
    net = train_classifier(x[train_idx], y[train_idx], epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, shift=args.shift,
                           seed=args.seed, width=args.width,
                           log=lambda s: print(s, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    held_acc = accuracy(net, x[held_idx], y[held_idx])
    train_acc = accuracy(net, x[train_idx], y[train_idx])
    print(f"held-out accuracy {held_acc:.4f} ({len(held_idx)} held-out images), "
          f"train accuracy {train_acc:.4f}, {wall:.0f} s", file=sys.stderr)
    if held_acc < MIN_ACCURACY[args.data]:
        print(f"error: held-out accuracy {held_acc:.4f} < {MIN_ACCURACY[args.data]}; not shipped "
              "(train longer: --epochs)", file=sys.stderr)
        return 1

    command = " ".join(["OMP_NUM_THREADS=1 python scripts/train_classifier.py",
                        *map(shlex.quote, argv)])
    meta = _meta(args, data_rec, split, held_acc=held_acc, train_acc=train_acc, wall=wall,
                 command=command)
    out = save_classifier(out_path, net, meta)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB)", file=sys.stderr)
    if not args.no_record:
        from asgan_base.manifest import record

        entry = record(out, command=command, seed=args.seed, heldout_accuracy=held_acc,
                       train_accuracy=train_acc, split=meta["split"], data=args.data,
                       epochs=args.epochs, wall_time_s=round(wall, 1), torch=torch.__version__)
        print(f"recorded {entry['path']} in checkpoints/MANIFEST.json", file=sys.stderr)
    return 0


def _meta(args: argparse.Namespace, data_rec: dict, split: dict, *, held_acc: float,
          train_acc: float, wall: float, command: str) -> dict:
    """The JSON header of the shipped file: architecture, input, data, split, accuracies
    (fractions in [0, 1]), training options (``wall`` in s) and the command."""
    return {
        "arch": {"name": "DigitCNN", "kwargs": {"width": args.width,
                                                "feature_dim": FEATURE_DIM}},
        "input": {"shape": [1, 28, 28], "pixel_range": [-1.0, 1.0],
                  "resize": "other sizes: bilinear, antialiased, to 28 px"},
        "feature_dim": FEATURE_DIM,
        "feature_layer": "penultimate: 128 ReLU units after the last linear of the body",
        "data": data_rec,
        "split": split,
        "heldout_accuracy": held_acc,
        "train_accuracy": train_acc,
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                     "optimizer": "Adam, cosine decay to 0", "shift_px": args.shift,
                     "seed": args.seed, "threads": args.threads, "wall_time_s": round(wall, 1)},
        "command": command,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    raise SystemExit(main())
