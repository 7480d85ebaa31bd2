#!/usr/bin/env bash
# Renders the pictures under docs/ from the committed baseline, in Debian's
# headless Chromium at 1400 px wide (a laptop screen):
#   docs/report.png         the HTML report's top: counts, contents, the baseline named
#   docs/report-wide.png    the widest scenario (kube-ovn-tproxy, 15 kernels)
#                           scrolled right and down: header row and version column stay
#   docs/compatibility.png  results/COMPATIBILITY.md as GitHub renders it (cmark-gfm)
# Run after `kmatrix baseline accept`; look at the pictures before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || sudo apt-get install -y chromium
command -v cmark-gfm >/dev/null || sudo apt-get install -y cmark-gfm
# The tables' verdict glyphs are emoji (as GitHub shows them).
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || sudo apt-get install -y fonts-noto-color-emoji
cargo build --quiet --bin kmatrix
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

shoot() { # PAGE PNG HEIGHT
  chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$work/profile" --hide-scrollbars \
    --window-size="1400,$3" --screenshot="$2" "file://$1" 2>/dev/null
}

# The whole baseline's report, top of the page.
cp -r results/baseline "$work/all"
target/debug/kmatrix report "$work/all" >/dev/null
shoot "$work/all/report.html" docs/report.png 1000

# One wide scenario, its table scrolled as a reader scrolls it. The script
# added to this copy only scrolls; the report itself has none.
mkdir "$work/wide"
grep '"scenario":"kube-ovn-tproxy"' results/baseline/cells.jsonl >"$work/wide/cells.jsonl"
cp results/baseline/run.json "$work/wide/"
target/debug/kmatrix report "$work/wide" >/dev/null
cat >>"$work/wide/report.html" <<'EOF'
<script>
  const box = document.querySelector('.scroll');
  box.style.maxHeight = '620px';
  box.scrollLeft = 900;
  box.scrollTop = 420;
</script>
EOF
shoot "$work/wide/report.html" docs/report-wide.png 1100

# COMPATIBILITY.md with GitHub's Markdown (tables, autolinks) and a
# GitHub-like style sheet.
{
  echo '<!DOCTYPE html><meta charset="utf-8"><style>'
  echo 'body{font:14px/1.5 -apple-system,"Segoe UI",system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1350px}'
  echo 'table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #d1d9e0;padding:4px 10px}'
  echo 'tr:nth-child(2n){background:#f6f8fa}code{background:#eff1f3;padding:1px 4px;border-radius:4px;font-size:85%}'
  echo 'h1,h2{border-bottom:1px solid #d1d9e0;padding-bottom:.3em}</style>'
  cmark-gfm --extension table --extension autolink results/COMPATIBILITY.md
} >"$work/compatibility.html"
shoot "$work/compatibility.html" docs/compatibility.png 1400
ls -l docs/report.png docs/report-wide.png docs/compatibility.png
