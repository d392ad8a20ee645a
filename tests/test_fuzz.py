"""Hostile and broken inputs: seeded fuzzing of every reader, and bad command lines.

Readers fuzzed (in one child process, so a crash, a hang or a runaway allocation cannot take
pytest down with it): the checkpoint reader (``trainers.checkpoint``: load_checkpoint and the
resume path), the older foreign formats through ``probes.io.sources.load``, every family
reader of the registry (``probes.io.families.MODULES``, seeded by each family's fixture files
under ``tests/fixtures/<module>/``: a family without them fails a test) and the data roots
(``trainers.data``). Cases come from a seeded mutator (truncations, bit flips, edited
headers, huge declared sizes, wrong dtypes and shapes, re-signed tampering that passes the
checksum, pickles with a code payload, zip/gzip bombs, pipes and devices). Every case must end
in a valid load or a one-line ``UserError``; a failure is any other exception, a message of
more than one line, a case running past its alarm (hang), a peak-RSS jump of more than
``RSS_LIMIT_MB`` (huge allocation; the child also runs under RLIMIT_AS) or the payload's
marker file appearing (code execution). The report counts every case.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import random
import resource
import signal
import subprocess
import sys
import time
import traceback
import zipfile
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N_CHECKPOINT = 1050  # seeded checkpoint-reader cases (the acceptance asks >= 1,000)
N_FOREIGN = 210
CASE_SECONDS = 10  # per-case alarm: a hang is a failure, not a stuck CI job
RSS_LIMIT_MB = 200  # peak-RSS growth within one case that counts as a huge allocation
AS_HEADROOM = 3 * 2**30  # RLIMIT_AS above the child's size at start: a backstop


# ============================================================================ the harness


class CaseTimeout(BaseException):
    """Raised by the per-case alarm; a BaseException so no reader's handler can swallow it."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    try:  # Linux: "5" resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


class Suite:
    """Runs cases and tallies outcomes: ok, user_error, or a failure with its reason."""

    def __init__(self, name: str, marker: Path):
        self.name, self.marker = name, marker
        self.tried = self.ok = self.user_error = 0
        self.failures: list[dict] = []
        self.outcomes: dict[str, str] = {}

    def run(self, case: str, fn, seconds: float = CASE_SECONDS) -> None:
        from asgan_base.errors import UserError

        self.tried += 1
        _reset_peak_rss()
        before = _peak_rss_mb()
        signal.setitimer(signal.ITIMER_REAL, seconds)
        outcome, detail = "ok", ""
        try:
            fn()
        except UserError as e:
            msg = str(e)
            outcome = "user_error"
            if not msg or "\n" in msg:
                outcome, detail = "failure", f"UserError not one line: {msg[:300]!r}"
        except CaseTimeout:
            outcome, detail = "failure", f"hang: still running after {seconds} s"
        except BaseException as e:  # noqa: BLE001 - classifying every escape is the point
            tb = traceback.extract_tb(e.__traceback__)[-1]
            outcome = "failure"
            detail = (f"{type(e).__name__}: {str(e)[:200]} "
                      f"(at {Path(tb.filename).name}:{tb.lineno})")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        grew = _peak_rss_mb() - before
        if grew > RSS_LIMIT_MB:
            outcome, detail = "failure", f"huge allocation: peak RSS +{grew:.0f} MB. {detail}"
        if self.marker.exists():
            outcome, detail = "failure", "CODE EXECUTED: the payload's marker file appeared"
            self.marker.unlink()
        self.outcomes[case] = outcome
        if outcome == "failure":
            self.failures.append({"case": case, "why": detail})
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def report(self) -> dict:
        return {"tried": self.tried, "ok": self.ok, "user_error": self.user_error,
                "failures": self.failures, "outcomes": self.outcomes}


class _Payload:
    """Unpickling this runs ``touch MARKER``: the classic pickle code payload."""

    def __init__(self, marker: Path, fn=os.system):
        self.marker, self.fn = str(marker), fn

    def __reduce__(self):
        if self.fn is os.system:
            return (os.system, (f"touch {self.marker}",))
        return (self.fn, (f"open({self.marker!r}, 'w').close()",))


def _payloads(marker: Path) -> dict[str, bytes]:
    """Pickles that would create ``marker`` if anything unpickled them, in every protocol."""
    import builtins

    out = {}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        out[f"pickle-os.system-p{proto}"] = pickle.dumps(_Payload(marker), protocol=proto)
        out[f"pickle-exec-p{proto}"] = pickle.dumps(_Payload(marker, builtins.exec),
                                                    protocol=proto)
    return out


def _deflate_bomb(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes, built from one repeated full-flush block
    (cheap to make: ~1 kB per MB)."""
    chunk = 16 * 2**20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    return block * (size // chunk) + end


def _gzip_bomb(size: int) -> bytes:
    """gzip members of 16 MB zeros, concatenated (gzip.decompress reads them all)."""
    member = gzip.compress(bytes(16 * 2**20), compresslevel=9)
    return member * (size // (16 * 2**20))


def _zip_bomb(size: int, name: str = "bomb") -> bytes:
    """A zip whose one entry inflates to ``size`` zero bytes (CRC left wrong: the inflater
    has allocated by the time it could notice)."""
    data = _deflate_bomb(size)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data/0", b"x")
    raw = bytearray(buf.getvalue())
    return _rewrite_zip_entry(bytes(raw), f"{name}/data/0", data, size)


def _rewrite_zip_entry(archive: bytes, entry: str, deflated: bytes, size: int) -> bytes:
    """``archive`` with ``entry`` replaced by a deflated payload declaring ``size`` bytes."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename != entry:
                dst.writestr(info, src.read(info.filename))
    body = out.getvalue()
    # append a hand-made deflated entry: local header + data, then rebuild the directory
    z = zipfile.ZipFile(io.BytesIO(body))
    infos = z.infolist()
    cd_offset = z.start_dir
    prefix = body[:cd_offset]
    name = entry.encode()
    local = (b"PK\x03\x04" + (20).to_bytes(2, "little") + (0).to_bytes(2, "little")
             + (8).to_bytes(2, "little") + (0).to_bytes(4, "little") + (0).to_bytes(4, "little")
             + len(deflated).to_bytes(4, "little") + min(size, 2**32 - 1).to_bytes(4, "little")
             + len(name).to_bytes(2, "little") + (0).to_bytes(2, "little") + name)
    offset = len(prefix)
    data = prefix + local + deflated
    central = b""
    for info in infos:
        central += _central(info.filename.encode(), 0, info.CRC, info.compress_size,
                            info.file_size, info.header_offset)
    central += _central(name, 8, 0, len(deflated), min(size, 2**32 - 1), offset)
    end = (b"PK\x05\x06" + bytes(4) + (len(infos) + 1).to_bytes(2, "little") * 2
           + len(central).to_bytes(4, "little") + len(data).to_bytes(4, "little") + bytes(2))
    return data + central + end


def _central(name: bytes, method: int, crc: int, csize: int, usize: int, offset: int) -> bytes:
    return (b"PK\x01\x02" + (20).to_bytes(2, "little") * 2 + (0).to_bytes(2, "little")
            + method.to_bytes(2, "little") + bytes(4) + crc.to_bytes(4, "little")
            + csize.to_bytes(4, "little") + usize.to_bytes(4, "little")
            + len(name).to_bytes(2, "little") + bytes(12) + offset.to_bytes(4, "little") + name)


# ============================================================================ byte mutators


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["truncate", "bitflip", "bitflip-head", "overwrite", "insert", "delete",
                       "length"])
    b = bytearray(data)
    if kind == "truncate":
        b = b[:rng.randrange(len(b))]
    elif kind in ("bitflip", "bitflip-head"):
        top = min(len(b), 8 + int.from_bytes(data[:8], "little")) if kind == "bitflip-head" \
            else len(b)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(max(top, 1))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
    elif kind == "insert":
        i = rng.randrange(len(b))
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    elif kind == "delete":
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 64)]
    else:
        n = int.from_bytes(data[:8], "little")
        b[:8] = rng.choice([0, 1, n - 1, n + 1, 2**31, 2**63, 2**64 - 1, 50 * 2**20 + 1,
                            len(data), len(data) - 8]).to_bytes(8, "little")
    return kind, bytes(b)


# ============================================================================ checkpoint suite

HOSTILE = [None, True, False, -1, 0, 1, 2**31, 2**63, 10**30, 1e308, float("nan"), -0.5, 2.5,
           "x", "", "9" * 5000, [], {}, [1, 2, 3], [[[]]], {"a": 1}, [-1.0, 1.0], [1.0, -1.0]]
DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3",
          "F8_E5M2", "U64", "U32", "U16", "F8_E8M0", "F4", "C64", "XYZ", "", 7]


def _split(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, body: bytes) -> bytes:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + body


HEADER_EDITS = ["dtype", "shape", "offsets", "drop", "rename", "add", "metadata",
                "meta", "meta", "meta", "meta"]


# dtypes the safetensors format parser accepts but its torch bridge has no torch.dtype for
# (its lookup raises KeyError), with their bits per element
EXOTIC_DTYPES = {"F8_E8M0": 8, "F4": 4}


def _exotic_dtype(data: bytes, dtype: str = "F8_E8M0") -> bytes:
    """The first F32 tensor whose bytes hold a whole number of ``dtype`` elements,
    relabelled ``dtype`` (same bytes, more elements): the Rust parser accepts it, the torch
    bridge cannot represent it."""
    header, body = _split(data)
    bits = EXOTIC_DTYPES[dtype]
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue
        n = 1
        for d in entry["shape"]:
            n *= d
        if n and (32 * n) % bits == 0:
            entry.update(dtype=dtype, shape=[32 * n // bits])
            return _join(header, body)
    raise AssertionError(f"no F32 tensor fits a whole number of {dtype} elements")


def _mutate_header(data: bytes, rng: random.Random, kinds=tuple(HEADER_EDITS)
                   ) -> tuple[str, bytes]:
    """Edit the safetensors JSON header (tensor entries or metadata); the body is untouched,
    so tensor-entry edits break the checksum and metadata edits keep it valid."""
    header, body = _split(data)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    kind = rng.choice(kinds)
    if kind == "dtype":
        header[name]["dtype"] = rng.choice(DTYPES)
    elif kind == "shape":
        header[name]["shape"] = rng.choice([[], [0], [-1], [2**40], [2**62, 2**62], ["a"],
                                            [2.5], [[1]], [1] * 40,
                                            [rng.randint(0, 99), rng.randint(0, 99)]])
    elif kind == "offsets":
        a, b = header[name]["data_offsets"]
        header[name]["data_offsets"] = rng.choice([[b, a], [a, 2**63], [-1, b], ["x", b], [a],
                                                   [a, b + 4], [0, len(body) + 8], [a, a]])
    elif kind == "drop":
        del header[name]
    elif kind == "rename":
        header[rng.choice(["G.nope", "D.0.weight.x", "", "opt_G.x.y", "D"])] = header.pop(name)
    elif kind == "add":
        header["D.extra"] = dict(header[name])
    elif kind == "metadata":
        header["__metadata__"] = rng.choice([None, [], "x", {"asgan_probe": 5},
                                             {"asgan_probe": "{not json"}, {},
                                             {"asgan_probe": "[" * 100_000 + "]" * 100_000}])
    else:
        meta = json.loads(header["__metadata__"]["asgan_probe"])
        kind = "meta:" + _mutate_meta(meta, rng)
        header["__metadata__"]["asgan_probe"] = json.dumps(meta)
    return kind, _join(header, body)


def _mutate_meta(meta: dict, rng: random.Random) -> str:
    """Set one field the readers use to a hostile value (or delete it); returns its path."""
    paths = [("step",), ("g_spec",), ("d_spec",), ("g_spec", "arch"), ("d_spec", "role"),
             ("pixel_range",), ("config",), ("data",), ("data", "shape"), ("format",),
             ("version",), ("sha256",), ("opt_G",), ("opt_D", "param_groups"),
             ("opt_G", "scalars")]
    for role in ("g_spec", "d_spec"):
        paths += [(role, "kwargs", k) for k in meta[role]["kwargs"]] + [(role, "kwargs", "zz")]
    path = rng.choice(paths)
    target = meta
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else {}
    if isinstance(target, dict):
        if rng.random() < 0.15:
            target.pop(path[-1], None)
        else:
            value = rng.choice(HOSTILE)
            if path[-1] in ("width", "z_dim", "depth", "channels") and rng.random() < 0.5:
                value = rng.choice([2**20, 2**30, 2**40, 10**6, 10**9])
            if path == ("opt_D", "param_groups") and rng.random() < 0.5:
                value = [{"params": rng.choice([[0, 1], ["a"], None, [10**9]]),
                          "lr": rng.choice(HOSTILE), "betas": rng.choice(HOSTILE)}]
            target[path[-1]] = value
    return ".".join(path)


def _resigned(base: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Tamper with the tensors themselves and recompute the checksum, as an attacker who
    knows the format would: the deeper checks (names, shapes, dtypes vs the spec) must hold."""
    import torch
    from safetensors.torch import load, save

    from trainers.checkpoint import tensor_digest

    tensors = load(base)
    header, _ = _split(base)
    meta = json.loads(header["__metadata__"]["asgan_probe"])
    name = rng.choice(sorted(tensors))
    t = tensors[name]
    kind = rng.choice(["reshape", "shrink", "grow", "dtype", "nan", "inf", "drop", "extra",
                       "scalar", "empty", "meta", "huge"])
    if kind == "reshape":
        tensors[name] = t.reshape(-1)
    elif kind == "shrink" and t.numel() > 1:
        tensors[name] = t.flatten()[:-1]
    elif kind == "grow":
        tensors[name] = torch.cat([t.flatten(), t.flatten()])
    elif kind == "dtype":
        tensors[name] = t.to(rng.choice([torch.float64, torch.float16, torch.bfloat16,
                                         torch.int64, torch.uint8, torch.bool]))
    elif kind == "nan" and t.is_floating_point():
        tensors[name] = torch.full_like(t, float("nan"))
    elif kind == "inf" and t.is_floating_point():
        tensors[name] = torch.full_like(t, float("inf"))
    elif kind == "drop":
        del tensors[name]
    elif kind == "extra":
        tensors["D.extra.weight"] = torch.zeros(3)
    elif kind == "scalar":
        tensors[name] = torch.tensor(1.0)
    elif kind == "empty":
        tensors[name] = torch.zeros(0)
    elif kind == "huge":  # a spec asking for a huge net, with weights of the real size
        role = rng.choice(["g_spec", "d_spec"])
        key = rng.choice(sorted(k for k, v in meta[role]["kwargs"].items()
                                if type(v) is int))
        meta[role]["kwargs"][key] = rng.choice([2**12, 2**16, 2**24])
    else:
        kind = "meta:" + _mutate_meta(meta, rng)
    meta["sha256"] = tensor_digest(tensors)
    return "resigned-" + kind, save(tensors, metadata={"asgan_probe": json.dumps(meta)})


def _try_checkpoint(path: Path) -> None:
    """What a user's load does, then what a resume does."""
    import torch

    from trainers import load_checkpoint
    from trainers.loop import _restore

    G, D, meta = load_checkpoint(path)
    if "opt_G" in meta:
        opt_G = torch.optim.Adam(G.parameters())
        opt_D = torch.optim.Adam(D.parameters())
        _restore(path, G, D, opt_G, opt_D)


def _base_checkpoints(work: Path) -> list[bytes]:
    """Two resumable snapshots as the trainer writes them: an mlp, and a dcgan with BatchNorm
    in G and spectral norm in D (int buffers, parametrizations), Adam state after one step."""
    import torch

    from trainers import make_config, save_checkpoint
    from trainers.nets import build_net, net_specs

    out = []
    for i, (arch, shape, sn) in enumerate([("mlp", (2,), False), ("dcgan", (1, 28, 28), True)]):
        cfg = make_config(None, dict(arch=arch, width=2, z_dim=4, d_spectral_norm=sn))
        g_spec, d_spec = net_specs(arch, shape=shape, z_dim=4, width=2, d_spectral_norm=sn)
        torch.manual_seed(i)
        G, D = build_net(g_spec), build_net(d_spec)
        opts = {}
        for name, net in (("opt_G", G), ("opt_D", D)):
            opts[name] = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
            for p in net.parameters():
                p.grad = torch.randn_like(p)
            opts[name].step()
        meta = {"config": cfg.to_dict(), "g_spec": g_spec, "d_spec": d_spec, "step": 1,
                "pixel_range": [-1.0, 1.0], "data": {"name": cfg.data, "shape": list(shape)}}
        path = save_checkpoint(work / f"base{i}.safetensors", G=G, D=D, meta=meta, **opts)
        out.append(path.read_bytes())
    return out


def checkpoint_suite(work: Path, marker: Path) -> dict:
    suite = Suite("checkpoint", marker)
    bases = _base_checkpoints(work)
    case_file = work / "case.safetensors"
    rng = random.Random(0)

    def run_bytes(case: str, data: bytes, name: Path = case_file) -> None:
        name.write_bytes(data)
        suite.run(case, lambda: _try_checkpoint(name))

    for i, base in enumerate(bases):
        run_bytes(f"base{i}", base)
    # whole-file replacements
    for name, data in _payloads(marker).items():
        for suffix in (".safetensors", ".pt"):
            run_bytes(f"{name}{suffix}", data, work / f"evil{suffix}")
    specials = {"empty": b"", "one-byte": b"\x00", "nine-bytes": b"\x00" * 8 + b"{",
                "json-text": b'{"G.w": 1}', "random-100": rng.randbytes(100),
                "random-10k": rng.randbytes(10_000), "gzip": gzip.compress(bases[0]),
                "zip-bomb-header": _zip_bomb(2**30),
                "header-max+1": (50 * 2**20 + 1).to_bytes(8, "little") + b"{" + bytes(64),
                "header-says-huge": (2**40).to_bytes(8, "little") + b"{}",
                **{f"dtype-unknown-to-torch-{dt}": _exotic_dtype(bases[0], dt)
                   for dt in EXOTIC_DTYPES}}
    for name, data in specials.items():
        run_bytes(name, data)
    _special_paths(suite, work)
    kinds = [_mutate_bytes, _mutate_header, _mutate_header, _resigned]
    while suite.tried < N_CHECKPOINT:
        seed = suite.tried
        r = random.Random(seed)
        base = bases[seed % len(bases)]
        kind, data = kinds[seed % len(kinds)](base, r)
        run_bytes(f"{seed}:{kind}", data)
    return suite.report()


def _special_paths(suite: Suite, work: Path) -> None:
    """Not-a-file paths: a FIFO (a naive open() blocks forever), devices, folders, links."""
    from trainers import load_checkpoint

    fifo = work / "fifo.safetensors"
    if hasattr(os, "mkfifo") and not fifo.exists():
        os.mkfifo(fifo)
    links = {"dev-zero.safetensors": "/dev/zero", "dev-null.safetensors": "/dev/null",
             "dangling.safetensors": str(work / "nowhere"), "loop.safetensors":
             str(work / "loop.safetensors")}
    for name, target in links.items():
        if not (work / name).is_symlink():
            (work / name).symlink_to(target)
    (work / "folder.safetensors").mkdir(exist_ok=True)
    for name in ["fifo.safetensors", "folder.safetensors", "missing.safetensors", *links]:
        suite.run(f"path:{name}", lambda name=name: load_checkpoint(work / name), seconds=2)


# ============================================================================ foreign suite


def _foreign_bases(work: Path) -> dict[str, bytes]:
    import torch
    from safetensors.torch import save

    from trainers.nets import build_net, net_specs

    torch.manual_seed(0)
    _, d_spec = net_specs("dcgan", shape=(1, 28, 28), z_dim=4, width=2)
    sd = build_net(d_spec).state_dict()
    authors = {f"main.{k}": v for k, v in sd.items()}
    out = {}
    for name, obj in {"state-dict": sd, "authors": authors,
                      "mimicry": {"model_state_dict": sd, "global_step": 5}}.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    out["legacy"] = buf.getvalue()
    out["safetensors"] = save({k: v.contiguous() for k, v in sd.items()})
    return out


OLD_FORMATS = ("state-dict", "authors", "authors-dcgan", "mimicry", "auto")


def foreign_suite(work: Path, marker: Path) -> dict:
    """``probes.io.sources.load`` of the older tensor-dict formats (torch.load
    weights_only=True / safetensors), each format named and ``auto``, on files made here."""
    from probes.io.sources import load

    suite = Suite("foreign", marker)
    FORMATS = OLD_FORMATS

    def load_foreign(path, format):
        return load(path, format=format)

    bases = _foreign_bases(work)
    case_file = work / "case.pt"

    def run_bytes(case: str, data: bytes) -> None:
        case_file.write_bytes(data)
        for fmt in FORMATS:
            suite.run(f"{case}|{fmt}", lambda fmt=fmt: load_foreign(case_file, format=fmt))

    for name, data in bases.items():
        run_bytes(f"base-{name}", data)
    for name, data in _payloads(marker).items():
        run_bytes(name, data)
    for dtype in EXOTIC_DTYPES:
        run_bytes(f"dtype-unknown-to-torch-{dtype}", _exotic_dtype(bases["safetensors"], dtype))
    # bombs and special paths: the file reader is shared by all formats, one is enough
    zbase = bases["state-dict"]
    inner = zipfile.ZipFile(io.BytesIO(zbase)).namelist()
    for entry, what in ((next(n for n in inner if "/data/" in n), "storage"),
                        (next(n for n in inner if n.endswith("data.pkl")), "pickle")):
        case_file.write_bytes(_rewrite_zip_entry(zbase, entry, _deflate_bomb(2**28), 2**28))
        suite.run(f"zip-bomb-{what}|state-dict",
                  lambda: load_foreign(case_file, format="state-dict"))
    fifo = work / "fifo.pt"
    if hasattr(os, "mkfifo") and not fifo.exists():
        os.mkfifo(fifo)
    suite.run("path:fifo|state-dict", lambda: load_foreign(fifo, format="state-dict"),
              seconds=2)
    seed = 0
    while suite.tried < N_FOREIGN:
        r = random.Random(10_000 + seed)
        name = sorted(bases)[seed % len(bases)]
        if name == "safetensors" and seed % 2:
            kind, data = _mutate_header(bases[name], r, kinds=HEADER_EDITS[:6])
        else:
            kind, data = _mutate_bytes(bases[name], r)
        run_bytes(f"{seed}:{name}:{kind}", data)
        seed += 1
    return suite.report()


# ============================================================================ families suite

FIXTURES = ROOT / "tests" / "fixtures"
N_FAMILY_MUTATIONS = 40  # seeded byte mutations per family (spread over its fixture files)


MAX_FAMILY_SEEDS = 4  # fixture files per family the fuzz mutates (CI time); sorted, so fixed


def family_bases(name: str, mod) -> dict[str, Path]:
    """A family's fuzz seeds: the files under ``tests/fixtures/<module>/`` (subfolders
    included) its sniffer knows, the first :data:`MAX_FAMILY_SEEDS` by path."""
    folder = FIXTURES / name
    if not folder.is_dir():
        return {}
    found = [p for p in sorted(folder.rglob("*")) if p.is_file() and mod.sniff(p)]
    return {p.relative_to(folder).as_posix(): p for p in found[:MAX_FAMILY_SEEDS]}


def _read_family(path: Path, fmt: str) -> None:
    """What a user's load does; a conditional file is read with class 0 bound when it asks
    for a label (the first error is the one reported otherwise)."""
    from asgan_base.errors import UserError
    from probes.io.sources import load

    try:
        load(path, format=fmt)
    except UserError as first:
        try:
            load(path, format=fmt, label=0)
        except UserError:
            raise first from None


def _cli_info(path: Path) -> None:
    """``asgan-probe info PATH`` in process: exit 2 with one stderr line and no traceback is a
    one-line error (raised as UserError here); exit 0 a valid read; anything else a failure."""
    import contextlib

    from asgan_base.errors import UserError
    from probes.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["info", str(path)])
    text = err.getvalue()
    if code == 2 and text.count("\n") == 1 and "Traceback" not in text:
        raise UserError(text.strip())
    if code != 0:
        raise AssertionError(f"info exited {code} with {text[-300:]!r}")


def _zip_with_pickle(base: bytes | None, payload: bytes) -> bytes:
    """A torch.save-like zip whose ``data.pkl`` is ``payload`` (the base's other records kept
    when the base is a zip)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        if base is not None and base[:2] == b"PK":
            src = zipfile.ZipFile(io.BytesIO(base))
            for info in src.infolist():
                data = payload if info.filename.endswith("data.pkl") else src.read(info)
                dst.writestr(info.filename, data)
        else:
            dst.writestr("archive/data.pkl", payload)
            dst.writestr("archive/version", b"3\n")
    return out.getvalue()


def families_suite(work: Path, marker: Path) -> dict:
    """Every family of ``probes.io.families.MODULES``, seeded by its fixture files: each
    base under its own format and ``auto``; code payloads (whole-file pickles in every
    protocol, a payload as a zip's ``data.pkl``, a payload inside a legitimate container) under
    its format, ``auto`` and ``asgan-probe info``; wrong containers; every other family's
    format; seeded truncations, bit flips and edits. A family without fixtures is listed (the
    pytest side fails for it)."""
    from probes.io import families

    suite = Suite("families", marker)
    seeds: dict[str, list[str]] = {}
    per: dict[str, list[str]] = {}
    all_formats = families.names()
    for name, mod in zip(families.MODULES, families.modules()):
        bases = family_bases(name, mod)
        seeds[name] = sorted(bases)
        per[name] = []
        if not bases:
            continue
        run = _family_runner(suite, work, name, per[name])
        others = [f for f in all_formats if f not in mod.NAMES]
        for fname, path in bases.items():
            # whole-file payloads do not depend on the base: tried once, with the first
            _family_base_cases(run, mod, fname, path, others, marker,
                               payloads=fname == min(bases))
        names = sorted(bases)
        for i in range(N_FAMILY_MUTATIONS):
            r = random.Random(20_000 + 1000 * families.MODULES.index(name) + i)
            fname = names[i % len(names)]
            kind, data = _mutate_bytes(bases[fname].read_bytes(), r)
            run(f"{i}:{fname}:{kind}", data, (mod.sniff(bases[fname]), "auto"),
                bases[fname].suffix)
    return {**suite.report(), "seeds": seeds, "cases": per}


def _family_runner(suite: Suite, work: Path, name: str, labels: list[str]):
    """``run(case, data, formats, suffix, cli=False)``: write ``data`` to one file, read it
    under each format (and ``asgan-probe info`` with ``cli``), each a case of ``suite``
    named ``<family>|<case>|<format>`` and listed in ``labels``."""
    def run(case: str, data: bytes, formats, suffix: str, cli: bool = False) -> None:
        path = work / f"{name}-case{suffix}"
        path.write_bytes(data)
        for fmt in formats:
            label = f"{name}|{case}|{fmt}"
            labels.append(label)
            suite.run(label, lambda fmt=fmt: _read_family(path, fmt))
        if cli:
            labels.append(f"{name}|{case}|cli-info")
            suite.run(f"{name}|{case}|cli-info", lambda: _cli_info(path))
    return run


def _family_base_cases(run, mod, fname: str, path: Path, others: list[str], marker: Path,
                       *, payloads: bool) -> None:
    """The cases one fixture file ``path`` seeds: itself, under ``others`` (every other
    family's format), code payloads (whole-file ones only with ``payloads``), wrong
    containers."""
    import torch

    fmt, data, suffix = mod.sniff(path), path.read_bytes(), path.suffix
    run(f"base:{fname}", data, (fmt, "auto"), suffix, cli=True)
    run(f"other-formats:{fname}", data, others, suffix)
    pickles = _payloads(marker)
    for pname, pdata in pickles.items() if payloads else ():
        run(f"{pname}:{fname}", pdata, (fmt, "auto"), suffix, cli=pname.endswith("p2"))
    evil = pickles["pickle-os.system-p2"]
    run(f"payload-as-data.pkl:{fname}", _zip_with_pickle(data, evil), (fmt, "auto"),
        suffix, cli=True)
    inside = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "callbacks": [_Payload(marker)]}, inside)
    run(f"payload-in-container:{fname}", inside.getvalue(), (fmt, "auto"), suffix, cli=True)
    containers = {"gzip": gzip.compress(data), "empty": b"",
                  "pickle-in-zip": _zip_with_pickle(None, data)}
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
            containers["zip-data.pkl-alone"] = z.read(pkl)
    for cname, cdata in containers.items():
        run(f"container-{cname}:{fname}", cdata, (fmt, "auto"), suffix)


# ============================================================================ data suite


def _png(mode: str = "RGB", size=(6, 5)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color=1).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(mode: str = "RGB", size=(6, 5)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color=1).save(buf, format="JPEG")
    return buf.getvalue()


def _png_with_size(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels (a decompression bomb if large)."""
    data = bytearray(_png("L", (1, 1)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = crc.to_bytes(4, "big")
    return bytes(data)


def _png_broken_chunk() -> bytes:
    """A PNG whose IDAT holds half its compressed data and is followed by a chunk with an
    invalid type: decoding reads on into it and Pillow raises SyntaxError("broken PNG file")."""
    data = _png()
    at = data.index(b"IDAT") - 4
    n = int.from_bytes(data[at:at + 4], "big")

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (len(payload).to_bytes(4, "big") + kind + payload
                + zlib.crc32(kind + payload).to_bytes(4, "big"))

    return (data[:at] + chunk(b"IDAT", data[at + 8:at + 8 + n // 2])
            + chunk(b"H\xc8/\xb3", b"") + data[at + 12 + n:])


def _cifar_batch(n: int = 4, **edits) -> bytes:
    import numpy as np

    batch = {b"data": np.arange(n * 3072, dtype=np.uint8).reshape(n, 3072),
             b"labels": list(range(n)), b"batch_label": b"fuzz"}
    batch.update(edits)
    return pickle.dumps(batch, protocol=2)


def _corrupt_deflate(gz: bytes) -> bytes:
    """A gzip file whose deflate stream is damaged just past the gzip header (zlib.error)."""
    b = bytearray(gz)
    b[10:14] = b"\xff\xff\xff\xff"
    return bytes(b)


def _idx(array) -> bytes:
    import numpy as np

    a = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) \
        + a.tobytes()


def data_suite(work: Path, marker: Path) -> dict:
    """The data roots of ``trainers.data.load_dataset``: missing, odd and empty roots, good
    and broken image files, CIFAR-10 python batches (payloads, hostile structure, byte
    mutations) and Fashion-MNIST IDX files (bombs, wrong sizes, byte mutations); each root is
    loaded and its first images decoded."""
    import torch

    from trainers.data import load_dataset

    suite = Suite("data", marker)
    counter = [0]

    def fresh() -> Path:
        counter[0] += 1
        d = work / f"root{counter[0]}"
        d.mkdir()
        return d

    def try_root(case: str, name: str, root, **kw) -> None:
        def load():
            ds = load_dataset(name, root=root, **kw)
            ds.get(torch.arange(min(ds.n, 64)))  # decode: corrupt files fail here
        suite.run(case, load)

    _data_layouts(work, fresh, try_root)
    _data_images(fresh, try_root)
    _data_cifar(marker, fresh, try_root)
    _data_idx(fresh, try_root)
    return suite.report()


def _data_layouts(work: Path, fresh, try_root) -> None:
    """Roots that are missing, a file, empty, absent, or hold no images (dirs named like
    images, an LMDB, text only, dangling and looping links)."""
    missing = work / "does-not-exist"
    a_file = work / "a-file"
    a_file.write_text("x")
    for name in ("imagefolder", "celeba", "lsun", "cifar10", "fashion-mnist"):
        try_root(f"{name}:missing-root", name, missing)
        try_root(f"{name}:root-is-a-file", name, a_file)
        try_root(f"{name}:empty-root", name, fresh())
        try_root(f"{name}:no-root", name, None)
    only_dirs = fresh()
    (only_dirs / "a" / "b.png").mkdir(parents=True)
    try_root("imagefolder:dir-named-png", "imagefolder", only_dirs)
    lmdb = fresh()
    (lmdb / "data.mdb").write_bytes(b"\0" * 64)
    try_root("lsun:lmdb", "lsun", lmdb)
    texts = fresh()
    (texts / "readme.txt").write_text("no images here")
    try_root("imagefolder:only-text", "imagefolder", texts)
    links = fresh()
    (links / "dangling.png").symlink_to(work / "nowhere.png")
    (links / "loop").symlink_to(links)
    (links / "ok.png").write_bytes(_png())
    try_root("imagefolder:links", "imagefolder", links, resolution=8)


def _data_images(fresh, try_root) -> None:
    """Image folders holding one good or bad file (each under .png and .jpg), then seeded
    truncated / bit-flipped real images next to a good one."""
    good = {"png-rgb": _png(), "png-l": _png("L"), "png-rgba": _png("RGBA"), "png-p": _png("P"),
            "png-1": _png("1"), "png-i16": _png("I;16"), "png-1x1": _png("RGB", (1, 1)),
            "jpeg-rgb": _jpeg(), "jpeg-l": _jpeg("L"), "jpeg-cmyk": _jpeg("CMYK")}
    bad = {"zero-bytes": b"", "random": random.Random(1).randbytes(300), "text": b"hello",
           "bomb-2e10-px": _png_with_size(100_000, 100_000),
           "png-truncated-header": _png()[:20], "gif-as-png": b"GIF89a" + bytes(20),
           "png-garbled-chunk-type": _png().replace(b"IDAT", b"H\xc8/\xb3"),
           "png-broken-chunk": _png_broken_chunk(),
           # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS (~89M) and decodes
           "bomb-1e8-px-warning-range": _png_with_size(10_000, 10_000),
           "bomb-2**32-px": _png_with_size(2**16, 2**16)}
    for kind, data in {**good, **bad}.items():
        for suffix in (".png", ".jpg"):
            root = fresh()
            (root / f"img{suffix}").write_bytes(data)
            try_root(f"imagefolder:{kind}{suffix}", "imagefolder", root, resolution=8)
    rng = random.Random(2)
    for i in range(80):  # truncated / bit-flipped real images next to good ones
        base = rng.choice([_png(), _jpeg(), _png("RGBA", (9, 7))])
        kind, data = _mutate_bytes(base, rng)
        root = fresh()
        (root / "a.png").write_bytes(_png())
        (root / "b.png").write_bytes(data)
        try_root(f"imagefolder:{i}:{kind}", "imagefolder", root, resolution=8)


def _cifar_structural() -> dict[str, bytes]:
    """CIFAR-10 batches with hostile structure: wrong types, shapes, label values, nesting."""
    import numpy as np

    return {
        "not-a-dict": pickle.dumps([1, 2, 3], protocol=2),
        "no-labels": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2),
        "float-data": _cifar_batch(data=np.zeros((4, 3072), np.float32)),
        "wrong-width": _cifar_batch(data=np.zeros((4, 100), np.uint8)),
        "1-d-data": _cifar_batch(data=np.zeros(3072, np.uint8)),
        "labels-short": _cifar_batch(labels=[1]),
        "labels-str": _cifar_batch(labels="abcd"),
        "labels-huge": _cifar_batch(labels=[10**30] * 4),
        "labels-int": _cifar_batch(labels=5),
        "labels-none": _cifar_batch(labels=None),
        "labels-dict": _cifar_batch(labels={1: 2, 3: 4, 5: 6, 7: 8}),
        "labels-10": _cifar_batch(labels=[10] * 4),
        "labels-negative": _cifar_batch(labels=[-1] * 4),
        "labels-floats": _cifar_batch(labels=[0.5] * 4),
        "labels-bools": _cifar_batch(labels=[True] * 4),
        "labels-bytes": _cifar_batch(labels=b"\x00\x01\x02\x03"),
        "labels-nested": _cifar_batch(labels=[[1]] * 4),
        "labels-float-array": _cifar_batch(labels=np.zeros(4, np.float32)),
        "labels-uint64-huge": _cifar_batch(labels=np.full(4, 2**64 - 1, np.uint64)),
        "labels-2-d-array": _cifar_batch(labels=np.zeros((4, 1), np.int64)),
        "labels-int-array": _cifar_batch(labels=np.arange(4, dtype=np.int16)),
        "empty-batch": _cifar_batch(n=0),
        "data-3-d": _cifar_batch(data=np.zeros((4, 3072, 1), np.uint8)),
        "data-not-array": _cifar_batch(data=b"\x00" * 3072 * 4),
        "object-array": _cifar_batch(data=np.array([None] * 4, dtype=object)),
        "deep-nesting": b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".",
        "memo-refs": b"\x80\x02]q\x00" + b"h\x00" * 100_000 + b"e.",
    }


def _data_cifar(marker: Path, fresh, try_root) -> None:
    """CIFAR-10 roots whose first batch is valid, a code payload, hostile in structure or
    byte-mutated (the other four batches valid)."""
    def cifar(case: str, first: bytes) -> None:
        root = fresh() / "cifar-10-batches-py"
        root.mkdir()
        (root / "data_batch_1").write_bytes(first)
        for k in range(2, 6):
            (root / f"data_batch_{k}").write_bytes(_cifar_batch())
        try_root(case, "cifar10", root.parent)

    cifar("cifar:valid", _cifar_batch())
    for name, data in _payloads(marker).items():
        cifar(f"cifar:{name}", data)
    for name, data in _cifar_structural().items():
        cifar(f"cifar:{name}", data)
    rng = random.Random(3)
    for i in range(100):
        kind, data = _mutate_bytes(_cifar_batch(), rng)
        cifar(f"cifar:{i}:{kind}", data)


def _data_idx(fresh, try_root) -> None:
    """Fashion-MNIST IDX roots (torchvision layout): valid, wrong labels and sizes, gzip
    bombs and damage, huge declared sizes, byte mutations."""
    import numpy as np

    images = np.arange(10 * 28 * 28, dtype=np.uint8).reshape(10, 28, 28)
    labels = np.arange(10, dtype=np.uint8) % 10

    def fashion(case: str, img: bytes, lab: bytes, gz: bool = False) -> None:
        raw = fresh() / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        suffix = ".gz" if gz else ""
        (raw / f"train-images-idx3-ubyte{suffix}").write_bytes(img)
        (raw / f"train-labels-idx1-ubyte{suffix}").write_bytes(lab)
        try_root(case, "fashion-mnist", raw.parent.parent)

    fashion("idx:valid", _idx(images), _idx(labels))
    fashion("idx:valid-gz", gzip.compress(_idx(images)), gzip.compress(_idx(labels)), gz=True)
    fashion("idx:labels-10", _idx(images), _idx(labels + 10))
    fashion("idx:count-mismatch", _idx(images), _idx(labels[:3]))
    fashion("idx:dims-huge", bytes([0, 0, 8, 3]) + (2**32 - 1).to_bytes(4, "big") * 3,
            _idx(labels))
    fashion("idx:gzip-truncated", gzip.compress(_idx(images))[:50],
            gzip.compress(_idx(labels)), gz=True)
    fashion("idx:gzip-bomb", _gzip_bomb(2**28), gzip.compress(_idx(labels)), gz=True)
    # a valid header (10 images) then 256 MB: reading must stop at the declared size
    fashion("idx:gzip-bomb-valid-header", gzip.compress(_idx(images)) + _gzip_bomb(2**28),
            gzip.compress(_idx(labels)), gz=True)
    fashion("idx:gzip-bomb-labels", gzip.compress(_idx(images)),
            gzip.compress(_idx(labels)) + _gzip_bomb(2**28), gz=True)
    head = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**20, 28, 28))
    fashion("idx:declares-822MB-holds-none", head, _idx(labels))
    fashion("idx:declares-822MB-gz", gzip.compress(head), gzip.compress(_idx(labels)), gz=True)
    fashion("idx:trailing-bytes", _idx(images) + b"\0", _idx(labels))
    fashion("idx:not-28x28", _idx(images.reshape(10, 7, 112)), _idx(labels))
    fashion("idx:zero-images", _idx(images[:0]), _idx(labels[:0]))
    fashion("idx:header-only", _idx(images)[:10], _idx(labels))
    fashion("idx:gzip-corrupt-deflate", _corrupt_deflate(gzip.compress(_idx(images))),
            gzip.compress(_idx(labels)), gz=True)
    fashion("idx:gzip-not-gzip", b"\x1f\x8b" + bytes(40), gzip.compress(_idx(labels)), gz=True)
    rng = random.Random(4)
    for i in range(50):
        kind, data = _mutate_bytes(_idx(images), rng)
        fashion(f"idx:{i}:{kind}", data, _idx(labels))


# ============================================================================ child entry


def _child_main(work: Path) -> None:
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    marker = work / "PWNED"
    here = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024 \
        if Path("/proc/self/status").exists() else 0
    if here:
        resource.setrlimit(resource.RLIMIT_AS, (here + AS_HEADROOM, resource.RLIM_INFINITY))
    report = {}
    for name, fn in (("checkpoint", checkpoint_suite), ("foreign", foreign_suite),
                     ("families", families_suite), ("data", data_suite)):
        start = time.perf_counter()
        sub = work / name
        sub.mkdir(exist_ok=True)
        report[name] = fn(sub, marker)
        report[name]["seconds"] = round(time.perf_counter() - start, 2)
    (work / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]))


# ============================================================================ pytest side


@pytest.fixture(scope="module")
def fuzz_report(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("fuzz")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, __file__, str(work)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"the fuzz child died (crash?):\n{res.stderr[-3000:]}"
    return json.loads((work / "report.json").read_text())


def _summary(name: str, rep: dict) -> str:
    return (f"{name}: tried {rep['tried']} cases in {rep['seconds']} s: {rep['ok']} valid "
            f"loads, {rep['user_error']} one-line errors, {len(rep['failures'])} failures")


def test_checkpoint_reader_fuzz(fuzz_report):
    rep = fuzz_report["checkpoint"]
    print(_summary("checkpoint reader", rep))
    assert rep["tried"] >= 1000
    assert rep["failures"] == [], json.dumps(rep["failures"][:10], indent=1)
    # the mutator reaches past the first checks: valid loads and deep errors both occur
    assert rep["ok"] >= 2 and rep["user_error"] > 900
    assert rep["outcomes"]["base0"] == rep["outcomes"]["base1"] == "ok"


def test_data_roots_fuzz(fuzz_report):
    rep = fuzz_report["data"]
    print(_summary("data roots", rep))
    assert rep["tried"] >= 250
    assert rep["failures"] == [], json.dumps(rep["failures"][:10], indent=1)
    assert rep["outcomes"]["imagefolder:png-rgb.png"] == "ok"
    assert rep["outcomes"]["cifar:valid"] == rep["outcomes"]["idx:valid"] == "ok"


def test_foreign_reader_fuzz(fuzz_report):
    rep = fuzz_report["foreign"]
    print(_summary("foreign reader", rep))
    assert rep["tried"] >= N_FOREIGN
    assert rep["failures"] == [], json.dumps(rep["failures"][:10], indent=1)
    assert rep["outcomes"]["base-state-dict|state-dict"] == "ok"


def _family_modules() -> list[str]:
    from probes.io.families import MODULES

    return list(MODULES)


@pytest.mark.parametrize("name", _family_modules())
def test_every_family_has_fuzz_fixtures(name):
    """The fuzz is seeded by each registered family's fixture files: a family without one
    would be skipped silently, so it fails here instead."""
    import importlib

    mod = importlib.import_module(f"probes.io.families.{name}")
    bases = family_bases(name, mod)
    assert bases, (f"family {name!r} has no fixtures under tests/fixtures/{name}/ (a file in "
                   f"its on-disk format that {name}.sniff recognises): the fuzz cannot cover it")


@pytest.mark.parametrize("name", _family_modules())
def test_family_reader_fuzz(fuzz_report, name):
    rep = fuzz_report["families"]
    cases = rep["cases"][name]
    outcomes = {c: rep["outcomes"][c] for c in cases}
    failures = [f for f in rep["failures"] if f["case"].startswith(f"{name}|")]
    print(f"family {name}: {len(cases)} cases on seeds {rep['seeds'][name]}: "
          f"{sum(v == 'ok' for v in outcomes.values())} valid loads, "
          f"{sum(v == 'user_error' for v in outcomes.values())} one-line errors, "
          f"{len(failures)} failures")
    assert rep["seeds"][name], f"no fuzz seeds for {name} (see test_every_family_has_fuzz_fixtures)"
    assert failures == [], json.dumps(failures[:10], indent=1)
    assert len(cases) >= 2 * N_FAMILY_MUTATIONS
    for seed in rep["seeds"][name]:  # each fixture loads, named and auto, and info reads it
        base = [c for c in cases if c.startswith(f"{name}|base:{seed}|")]
        assert base and all(outcomes[c] == "ok" for c in base), {c: outcomes[c] for c in base}
    # payload cases only ("container-pickle-in-zip" wraps the family's own, harmless pickle)
    evil = [c for c in cases if "payload" in c or c.split("|")[1].startswith("pickle-")]
    assert evil and all(outcomes[c] == "user_error" for c in evil), \
        [c for c in evil if outcomes[c] != "user_error"][:5]

