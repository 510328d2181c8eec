#!/usr/bin/env bash
# The quick start: installs what is missing, builds in Release, measures how fast this machine trains
# the `tiny` preset, trains it on a text file for as many steps as fit the time budget (the whole
# learning-rate schedule, not a run cut short), then evaluates it and samples from it.
# Usage: scripts/run.sh [TEXT_FILE]   (default: ../shared/data/tinyshakespeare.txt when present)
# Environment: TRAIN_SECONDS (training budget, default 300), PROMPT (default "ROMEO:").
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
budget=${TRAIN_SECONDS:-300}
prompt=${PROMPT:-ROMEO:}
if ! scripts/quickstart_steps.sh 1 "$budget" >/dev/null 2>&1; then  # checked before the long build
  echo "error: TRAIN_SECONDS='$budget' is not a positive number of seconds" >&2
  exit 1
fi

# The tiny preset's whole context, so that sampling never reaches positions training did not see.
batch=8
seq=256
# The byte tokenizer makes one token of each byte of the prompt.
prompt_tokens=$(printf '%s' "$prompt" | wc -c)
if (( prompt_tokens >= seq )); then
  echo "error: PROMPT is $prompt_tokens bytes; the tiny model's context is $seq" >&2
  exit 1
fi

scripts/build.sh
out=runs/tiny
bin=build/switchyard

echo "== measuring the training step (tiny preset, batch $batch x seq $seq)"
bench_log=$(mktemp)
if ! bench_json=$($bin bench train --model tiny --batch $batch --seq $seq --steps 5 --warmup 2 --json 2>"$bench_log"); then
  cat "$bench_log" >&2
  exit 1
fi
rm -f "$bench_log"
ms_per_step=$(tail -n 1 <<<"$bench_json" | grep -o '"ms_per_step":[0-9.eE+-]*' | cut -d: -f2 || true)
plan=$(scripts/quickstart_steps.sh "$ms_per_step" "$budget")
read -r steps warmup eval_every <<<"$plan"
estimate=$(awk -v ms="$ms_per_step" -v n="$steps" 'BEGIN { printf "%.0f", ms * n / 1000 }')
echo "== $steps steps (warmup $warmup, then cosine decay) at $(printf '%.0f' "$ms_per_step") ms/step:" \
  "about $estimate s of the $budget s budget (TRAIN_SECONDS)"

echo "== training on $text (byte tokenizer; checkpoint, log and loss curve in $out)"
# The time limit only guards against the machine slowing down far below the measured speed.
$bin train --model tiny --data "$text" --out "$out" --batch $batch --seq $seq --steps "$steps" \
  --warmup "$warmup" --lr 2e-3 --eval-every "$eval_every" --eval-windows 40 --log-every 50 \
  --time-limit "$(awk -v s="$budget" 'BEGIN { printf "%d", 2 * s + 60 }')"
echo "== evaluating on the held-out 10%"
$bin eval --model "$out" --data "$out/data/val.bin" --seq $seq
echo "== sampling $((seq - prompt_tokens)) tokens (prompt and sample fill the trained context of $seq)"
$bin generate --model "$out" --prompt "$prompt" --max-new-tokens $((seq - prompt_tokens)) --temperature 0.8 \
  --top-k 40
echo "== done: loss curve in $out/loss.svg, step log in $out/log.jsonl"
