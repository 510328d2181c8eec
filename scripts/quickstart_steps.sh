#!/usr/bin/env bash
# Chooses the length of the quick-start training run from a measured step time, so that the whole
# learning-rate schedule (warmup, then cosine decay) ends within the time budget instead of being cut
# off by a time limit part-way down the decay.
# Usage: scripts/quickstart_steps.sh MS_PER_STEP BUDGET_SECONDS
# Prints one line: STEPS WARMUP EVAL_EVERY
#   STEPS       steps that fit 90% of the budget (the rest is left for evaluation, checkpoints and
#               start-up), at least 100 (fewer teach the model nothing worth sampling) and at most
#               4000 (about 9 passes over tinyshakespeare at 2048 tokens a step)
#   WARMUP      5% of the steps, at least 10
#   EVAL_EVERY  about six validation losses over the run
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 MS_PER_STEP BUDGET_SECONDS" >&2
  exit 2
fi
is_positive='^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$'
for value in "$1" "$2"; do
  if ! [[ "$value" =~ $is_positive ]] || awk -v v="$value" 'BEGIN { exit !(v <= 0) }'; then
    echo "error: '$value' is not a positive number (usage: $0 MS_PER_STEP BUDGET_SECONDS)" >&2
    exit 2
  fi
done

awk -v ms="$1" -v seconds="$2" 'BEGIN {
  min_steps = 100; max_steps = 4000
  steps = int(0.9 * seconds * 1000 / ms)
  if (steps < min_steps) steps = min_steps
  if (steps > max_steps) steps = max_steps
  warmup = int(steps / 20 + 0.5); if (warmup < 10) warmup = 10
  eval_every = int(steps / 6); if (eval_every < 1) eval_every = 1
  print steps, warmup, eval_every
}'
