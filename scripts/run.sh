#!/usr/bin/env bash
# The quick start: installs what is missing, builds in Release, trains the `tiny` preset on a text
# file for a few minutes on the CPU, then evaluates it and samples from it.
# Usage: scripts/run.sh [TEXT_FILE]   (default: ../shared/data/tinyshakespeare.txt when present)
set -euo pipefail
cd "$(dirname "$0")/.."

text=${1:-}
if [[ -z "$text" && -f ../shared/data/tinyshakespeare.txt ]]; then
  text=../shared/data/tinyshakespeare.txt
fi
if [[ -z "$text" ]]; then
  if [[ -t 0 ]]; then
    read -r -p "Text file to train on (UTF-8, at least a few hundred KB): " text
  else
    echo "error: no text file given: run scripts/run.sh PATH/TO/TEXT.txt" >&2
    exit 1
  fi
fi
[[ -f "$text" ]] || { echo "error: $text is not a file" >&2; exit 1; }

scripts/build.sh
out=runs/tiny
bin=build/switchyard
echo "== training the tiny preset on $text (byte tokenizer; checkpoint, log and loss curve in $out)"
$bin train --model tiny --data "$text" --out "$out" --batch 16 --seq 128 --steps 1200 --warmup 60 \
  --lr 2e-3 --eval-every 200 --eval-windows 40 --log-every 50 --time-limit "${TRAIN_SECONDS:-300}"
echo "== evaluating on the held-out 10%"
$bin eval --model "$out" --data "$out/data/val.bin" --seq 128
echo "== sampling"
$bin generate --model "$out" --prompt "${PROMPT:-ROMEO:}" --max-new-tokens 300 --temperature 0.8 --top-k 40
echo "== done: loss curve in $out/loss.svg, step log in $out/log.jsonl"
