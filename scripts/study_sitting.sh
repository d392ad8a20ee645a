#!/usr/bin/env bash
# One background sitting of a registered study, committed run by run (issue 23: "commit
# finished runs with their manifest entries as they complete, so the next session goes on").
#
#   bash scripts/study_sitting.sh studies/v3.toml [asgan-study run options...]
#
# Runs `asgan-study run PLAN` (a sitting: trains, measures and ships what is missing; it
# resumes what an earlier sitting left) and, every COMMIT_EVERY seconds (default 300) and once
# at the end, commits the plan's shipped folder and the manifest when they changed, so a
# session that ends keeps every run it finished. Stop it with SIGTERM (to this script): the
# sitting gives each running run one SIGTERM (each writes a snapshot and resumes next time),
# then the last commit is made. Run it from a clean checkout of the registered commit (a
# separate git worktree is best): runs record the commit they start from, and uncommitted
# training code is recorded as code_dirty.
set -uo pipefail
cd "$(dirname "$0")/.."
PLAN=${1:?usage: bash scripts/study_sitting.sh PLAN [asgan-study run options...]}
shift
COMMIT_EVERY=${COMMIT_EVERY:-300}
# the Python whose packages train (the code is this checkout's: PYTHONPATH below)
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SHIP=$("$PY" -c 'import sys; from probes.study.plan import load_plan
p = load_plan(sys.argv[1], check_configs=False); print((p.root / p.ship).as_posix(), p.manifest.as_posix())' "$PLAN") || exit 2
read -r SHIP_DIR MANIFEST <<< "$SHIP"

commit() {  # commit the shipped runs and the manifest, if anything changed
  git add -- "$SHIP_DIR" "$MANIFEST" 2> /dev/null
  if ! git diff --cached --quiet -- "$SHIP_DIR" "$MANIFEST"; then
    local n
    n=$(git diff --cached --name-only -- "$SHIP_DIR" | grep -c 'results.json$')
    local what="$n more run(s) shipped by a sitting (results, logs, manifest entries)"
    [ "$n" = 0 ] && what="the sitting's PLAN.json and partial shipments (no run complete yet)"
    git commit -q -m "$(basename "$PLAN" .toml): $what" \
      -- "$SHIP_DIR" "$MANIFEST" && echo "$(date -u +%FT%TZ) committed $n run(s)"
  fi
}

PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m probes.study run "$PLAN" "$@" &
SITTING=$!
trap 'kill -TERM $SITTING 2> /dev/null' TERM INT
while kill -0 $SITTING 2> /dev/null; do
  for _ in $(seq "$COMMIT_EVERY"); do kill -0 $SITTING 2> /dev/null || break; sleep 1; done
  commit
done
wait $SITTING
rc=$?
commit
echo "$(date -u +%FT%TZ) sitting ended rc=$rc"
exit $rc
