#!/usr/bin/env bash
# Rebuild the shipped leaderboard: sweep the embedded sample into results/, render site/.
# Usage: leaderboard/build.sh   (after the README's first command has made .venv)
set -euo pipefail
cd "$(dirname "$0")"
wsssbed=../.venv/bin/wsssbed
staging=$(mktemp -d results.XXXXXX)
trap 'rm -rf "$staging"' EXIT
sweep() { "$wsssbed" sweep --per-image --out "$staging" --json "$@" >/dev/null; }
sweep --split train
sweep --split val
sweep --split train --generator power-bg --alphas 1:32:1
sweep --split train --generator saliency-rule --sal-thresholds 0.2 --thresholds 0:0.6:0.01
sweep --split train --generator saliency-rule --sal-thresholds 0.1:0.5:0.05 \
  --thresholds 0:0.6:0.05 --ignore-label
rm -rf results && mv "$staging" results
"$wsssbed" leaderboard --results results --out site
