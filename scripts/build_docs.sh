#!/usr/bin/env bash
# Build the documentation site into site/ with `mkdocs build --strict` (a broken link, a
# missing reference or a docstring the API pages cannot render fails the build).
# The study report page is the main job's output: runs/report/ (report.md and its figures) is
# copied into docs/report/ (ignored by git); without it, the main job runs first (minutes).
#   REPORT=DIR   take the report from DIR instead of runs/report
#   PYTHON=...   the interpreter with the docs tools (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
REPORT=${REPORT:-runs/report}
if [ ! -f "$REPORT/report.md" ]; then
  echo "build_docs: no $REPORT/report.md; running the main job first (asgan-probe report)" >&2
  "$PY" -m probes report --out "$REPORT"
fi
# the report's own files only: report.md and the figures it links (no stale leftovers)
rm -rf docs/report
mkdir -p docs/report
cp "$REPORT/report.md" docs/report/
find "$REPORT" -maxdepth 1 -type f \( -name '*.png' -o -name '*.svg' \) -exec cp {} docs/report/ \;
# each further shipped study's report (studies/SHIPPED), in its folder
for sub in "$REPORT"/*/; do
  [ -f "$sub/report.md" ] || continue
  name=$(basename "$sub")
  mkdir -p "docs/report/$name"
  cp "$sub/report.md" "docs/report/$name/"
  find "$sub" -maxdepth 1 -type f \( -name '*.png' -o -name '*.svg' \) -exec cp {} "docs/report/$name/" \;
done
# the MkDocs 2 notice some plugins print is not a build problem; keep the log to our warnings
export DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1
"$PY" -m mkdocs build --strict --site-dir site
echo "site: site/index.html"
