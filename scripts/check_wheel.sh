#!/usr/bin/env bash
# The package as a wheel user gets it (CI runs this; about a minute).
#  1. build the wheel from a copy of what a clone holds (no stale build/ folder can leak in);
#     any build warning fails;
#  2. check its contents: every module of asgan_base/, probes/ and trainers/, the embedded data,
#     nothing else;
#  3. install it into a fresh venv with the source tree off the path and run the tools from a
#     temporary folder: --help, info on a shipped checkpoint, a smoke training run, an attack on
#     it, and the classifier found through --checkpoints (and the error without it).
# The fresh venv reuses the project venv's dependencies instead of downloading 5 GB again: a
# .pth line puts that venv's site-packages after the fresh one's (a .pth only adds the folder;
# .pth files inside it, such as the editable install's finder, are not run, so the source tree
# stays off the path, which step 3 asserts). pip check then proves that every requirement in
# the wheel's metadata is satisfied by what is installed.
#   PY=path/to/python (default .venv/bin/python): the interpreter that builds and provides deps.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PY:-$REPO/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
step() { echo "check_wheel [$((SECONDS - t0)) s]: $*"; }

step "copy the tree a clone holds (tracked and untracked, not ignored)"
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard \
  | (cd "$REPO" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) \
  | tar -xf - -C "$WORK/src"

step "build the wheel"
if ! "$PY" -m pip wheel --no-deps --no-build-isolation -v -w "$WORK/dist" "$WORK/src" \
    >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log"
  echo "check_wheel: the wheel did not build" >&2
  exit 1
fi
# distutils says "byte-compiling is disabled" when PYTHONDONTWRITEBYTECODE is set: that is the
# caller's environment, not the project
if grep -iE "warning|deprecat" "$WORK/build.log" | grep -v "byte-compiling is disabled"; then
  echo "check_wheel: the build printed the warnings above (full log: pip wheel -v .)" >&2
  exit 1
fi
WHEEL=$(ls "$WORK"/dist/*.whl)

step "check the wheel's contents"
"$PY" - "$WHEEL" "$WORK/src" <<'EOF'
import os, sys, zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
want = {p.relative_to(src).as_posix() for pkg in ("asgan_base", "probes", "trainers")
        for p in (src / pkg).rglob("*.py")}
want |= {"trainers/data/mnist10k.npz", "trainers/data/mnist10k.json",
         "probes/study/claims.json"}
missing = sorted(want - names)
tops = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")})
extra = sorted(n for n in names - want if not n.split("/")[0].endswith(".dist-info"))
if missing or tops != ["asgan_base", "probes", "trainers"] or extra:
    sys.exit(f"check_wheel: missing {missing[:5]}, top-level {tops}, unexpected {extra[:5]}")
print(f"{os.path.basename(wheel)}: {len(names)} files, {os.path.getsize(wheel) / 1e6:.2f} MB")
EOF

step "install it into a fresh venv"
"$PY" -m venv --without-pip "$WORK/venv"
VPY=$WORK/venv/bin/python
purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }
purelib "$PY" >"$(purelib "$VPY")/project-venv-deps.pth"
"$PY" -m pip --python "$VPY" install -q --no-deps --no-index "$WHEEL"
# pip check covers every distribution on the path; only the wheel's own lines matter here
if "$PY" -m pip --python "$VPY" check 2>&1 | grep -i "^asgan-probe "; then
  echo "check_wheel: the wheel's requirements are not met (above)" >&2
  exit 1
fi

step "run the installed tools from $WORK/run"
mkdir "$WORK/run"
cd "$WORK/run"
unset PYTHONPATH ASGAN_PROBE_CHECKPOINTS
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$WORK/venv/bin
"$VPY" - "$REPO" "$(purelib "$VPY")" <<'EOF'
import importlib, pkgutil, sys
from pathlib import Path

repo, site = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
assert not any(Path(p or ".").resolve() == repo for p in sys.path), sys.path
n = 0
for top in ("probes", "trainers"):
    pkg = importlib.import_module(top)
    for m in pkgutil.walk_packages(pkg.__path__, f"{top}."):
        if m.name.endswith("__main__"):
            continue
        mod = importlib.import_module(m.name)
        assert Path(mod.__file__).resolve().is_relative_to(site), (m.name, mod.__file__)
        n += 1
print(f"{n} modules import from {site}")
EOF
"$BIN/asgan-probe" --help >/dev/null
# a shipped checkpoint, found the way the study finds it (the manifest: paths move when the
# study is regenerated), by the project's interpreter in the checkout
SHIPPED=$(cd "$REPO" && "$PY" -c 'from probes.study.arms import shipped_runs
print(shipped_runs("mnist10k")["baseline"][0])')
"$BIN/asgan-probe" info "$SHIPPED" >info.json
"$BIN/asgan-train" --preset smoke --out smoke --no-progress >train.json
SMOKE=$(ls smoke/ckpt-*.safetensors | tail -1)
"$BIN/asgan-probe" attack "$SMOKE" --n 64 --eps 0,2/255 --out attack.json --no-progress
# an installed wheel carries no checkpoints: without --checkpoints the classifier is an error
# of one line that says what to pass; with it, quality runs on the smoke run
set +e
"$BIN/asgan-probe" quality "$SMOKE" --n 64 --kid-subset-size 32 --out q.json 2>err.txt
code=$?
set -e
if [ "$code" != 2 ] || [ "$(wc -l <err.txt)" != 1 ] || ! grep -q ASGAN_PROBE_CHECKPOINTS err.txt; then
  cat err.txt
  echo "check_wheel: quality without checkpoints gave exit $code, not one line with exit 2" >&2
  exit 1
fi
echo "without --checkpoints, as expected: $(cat err.txt)"
"$BIN/asgan-probe" quality "$SMOKE" --n 64 --kid-subset-size 32 --out q.json \
  --checkpoints "$REPO/checkpoints"
step "ok: $(basename "$WHEEL") built without warnings, installed and run outside the tree"
