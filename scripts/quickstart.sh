#!/usr/bin/env bash
# The main job on the embedded default data (mnist10k), from a fresh clone:
# set up, train a short baseline and a short AS-GAN run, write runs/demo/report/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
STEPS=${STEPS:-600}
for trainer in baseline asgan; do
  rm -rf "runs/demo/$trainer"
  .venv/bin/asgan-train --preset mnist10k-dcgan --trainer "$trainer" --steps "$STEPS" \
    --snapshot-every 200 --sample-every 200 --seed 0 --out "runs/demo/$trainer"
done
.venv/bin/asgan-probe report runs/demo/baseline runs/demo/asgan --out runs/demo/report
echo "report: runs/demo/report/report.md"
