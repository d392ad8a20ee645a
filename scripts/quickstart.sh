#!/usr/bin/env bash
# The main job, from a fresh clone: set up, then regenerate the study report (every figure
# and the claims table) from the checkpoints shipped in checkpoints/shipped/.
#   TRAIN=1   also train a short baseline and AS-GAN run on mnist10k first (a few minutes)
#             and write a report comparing them (runs/demo/report/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${TRAIN:-0}" = "1" ]; then
  STEPS=${STEPS:-600}
  for trainer in baseline asgan; do
    rm -rf "runs/demo/$trainer"
    .venv/bin/asgan-train --preset mnist10k-dcgan --trainer "$trainer" --steps "$STEPS" \
      --snapshot-every 200 --sample-every 200 --seed 0 --out "runs/demo/$trainer"
  done
  .venv/bin/asgan-probe report runs/demo/baseline runs/demo/asgan --out runs/demo/report
fi
.venv/bin/asgan-probe report --out runs/report
echo "report: runs/report/report.md"
