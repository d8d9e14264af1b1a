#!/usr/bin/env bash
# Screenshot a select run's HTML report with headless Chromium (Debian: apt-get install chromium),
# for docs/ci.md: builds the demo pool from this machine's text, selects with --report, renders.
#   bash docs/render_report.sh [WORK_DIR]      # writes docs/img/report-select.png
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
curate=${CURATE:-curate}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "no headless Chromium found: apt-get install chromium" >&2
  exit 1
fi
"$curate" demo "$work" --no-progress >/dev/null
"$curate" select "$work/corpus/pool" "$work/report-run" --target "$work/corpus/target.parquet" \
  --budget 100K --group-by domain --overwrite --no-progress --report "$work/report.html" \
  --check 'kl_reduction >= 0.2' --check 'abs(budget_error) <= 1%' >/dev/null
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,1700 \
  --screenshot="$here/img/report-select.png" "file://$work/report.html" 2>/dev/null
echo "wrote $here/img/report-select.png from $work/report.html"
