#!/usr/bin/env bash
# Serving benchmark on the CPU: `switchyard bench serve` against `switchyard serve` on this machine,
# with `switchyard bench generate` (the same model decoding alone, no HTTP) as the peer, in one run.
#
# Usage: bench/serve_cpu.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure                         (default: <repo>/build/switchyard)
#   MODEL           model preset or checkpoint                  (default: gpt2-124m)
#   DTYPE           --dtype of the server and the peer: auto, fp32 or bf16 (default: auto, i.e.
#                   bf16 on a CPU with bf16 units, fp32 elsewhere)
#   DATASET         prompts (a text file or a JSON list)        (default: ../shared/data/tinyshakespeare.txt)
#   PROMPT_TOKENS   prompt length cut from a text file          (default: 8)
#   OUTPUT_TOKENS   max_tokens of each request                  (default: 128)
#   CONCURRENCY     the batched load's concurrency              (default: 32)
#   ROUNDS          alternating single-stream / batched loads, for their ratio (default: 5; the
#                   medians are compared, as a slow minute moved one batched load by 15%)
#   PAIRS           alternating single-stream / bench generate runs, for the overhead figure, each
#                   single stream on a fresh server (default: 15; the median of each is compared, as
#                   one pair's ratio moved from 0.81 to 1.26 within one run on a shared host)
#   PORT            the server's port                           (default: 8199)
#
# Measures, in order: the single stream (concurrency 1) and the batched load (concurrency N),
# alternating ROUNDS times, with the ratio of their medians; the saturating request rate (every
# request sent at once, at most N running) and then Poisson arrivals at half that rate for its time
# to first token; the single stream through HTTP against bench generate, PAIRS times alternating.
# Prints the machine, the date, every command and a summary; exits non-zero when a run fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
model="${MODEL:-gpt2-124m}"
dtype="${DTYPE:-auto}"
dataset="${DATASET:-$root/../shared/data/tinyshakespeare.txt}"
prompt_tokens="${PROMPT_TOKENS:-8}"
output_tokens="${OUTPUT_TOKENS:-128}"
concurrency="${CONCURRENCY:-32}"
pairs="${PAIRS:-15}"
rounds="${ROUNDS:-5}"
port="${PORT:-8199}"
url="http://127.0.0.1:$port"

[[ -x "$bin" ]] || { echo "error: '$bin' not found or not executable (build it, or set SWITCHYARD_BIN)" >&2; exit 1; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS must be a whole number >= 1, got '$rounds'" >&2; exit 1; }
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || { echo "error: PAIRS must be a whole number >= 1, got '$pairs'" >&2; exit 1; }
[[ -r "$dataset" ]] || { echo "error: dataset '$dataset' not readable (set DATASET)" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

serve_cmd=("$bin" serve --model "$model" --dtype "$dtype" --port "$port" --max-seqs "$concurrency")
echo "server: ${serve_cmd[*]}"
# Starts a fresh server and waits until it answers.
start_server() {
  "${serve_cmd[@]}" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    curl -sf "$url/health" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "error: the server exited" >&2; exit 1; }
    sleep 0.2
  done
  echo "error: the server did not answer /health within a minute" >&2; exit 1
}
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
start_server

# bench serve with the given extra flags; its JSON line goes to $work/$1.json.
load() {
  local name=$1; shift
  local cmd=("$bin" bench serve --url "$url" --dataset "$dataset" --prompt-tokens "$prompt_tokens"
             --output-tokens "$output_tokens" --json "$@")
  echo "load ($name): ${cmd[*]}" >&2
  "${cmd[@]}" 2>/dev/null | tail -1 >"$work/$name.json"
  python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
if r['failed'] > 0:
    sys.exit(f\"error: {r['failed']} requests failed in the {sys.argv[2]} load: {r['errors']}\")" \
    "$work/$name.json" "$name"

}
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, r))" "$work/$1.json" "$2"; }

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
# The median over the rounds' runs named $1<round> of the expression $2 of each run's JSON.
round_median() {
  local values=()
  for i in $(seq "$rounds"); do values+=("$(field "$1$i" "$2")"); done
  median "${values[@]}"
}

load warmup --concurrency 1 --num-prompts 1
for i in $(seq "$rounds"); do
  load "single$i" --concurrency 1 --num-prompts 4
  load "batched$i" --concurrency "$concurrency" --num-prompts $((2 * concurrency))
done
load saturated --num-prompts $((4 * concurrency))
saturating_rate=$(field saturated "request_throughput")
half_rate=$(python3 -c "print(f'{$saturating_rate / 2:.3f}')")
load half_rate --request-rate "$half_rate" --num-prompts $((4 * concurrency)) --seed 1

# The overhead pairs: single-stream TPOT through HTTP, then bench generate over the same number of
# positions (prompt + output), alternating, each alone on the machine (the server stopped before
# its peer runs). Each pair starts a fresh server, as each bench generate is a fresh process: on
# this VM one process of the same binary decodes up to 10% faster than another, for its whole
# life, and which one is random from start to start (where the memory landed), so one server
# against many peers would compare one draw with a median of many.
positions=$(python3 -c "
import json; r=json.load(open('$work/single1.json'))
print(round((r['prompt_tokens'] + r['output_tokens']) / r['completed']))")
http_tpot=(); generate_ms=()
stop_server
for i in $(seq "$pairs"); do
  start_server
  load "pair${i}_warmup" --concurrency 1 --num-prompts 1
  load "pair$i" --concurrency 1 --num-prompts 2
  stop_server
  http_tpot+=("$(field "pair$i" "tpot_ms['mean']")")
  generate_ms+=("$("$bin" bench generate --model "$model" --dtype "$dtype" --tokens "$positions" --json | tail -1 |
                   python3 -c 'import json,sys; print(json.load(sys.stdin)["ms_per_token"])')")
done
echo "peer: $bin bench generate --model $model --dtype $dtype --tokens $positions (x$pairs, alternating with the pairs' single stream, each pair on a fresh server stopped before its peer)"

http_median=$(median "${http_tpot[@]}")
generate_median=$(median "${generate_ms[@]}")

single=$(round_median single "output_throughput")
batched=$(round_median batched "output_throughput")
echo
echo "model $model, prompts of ~$prompt_tokens tokens from $(basename "$dataset"), $output_tokens output tokens"
echo "medians over $rounds rounds of a single stream (4 requests) then concurrency $concurrency ($((2 * concurrency)) requests):"
printf 'single stream:          %8.1f output tok/s, TPOT mean %.2f ms, TTFT p99 %.1f ms\n' \
  "$single" "$(round_median single "tpot_ms['mean']")" "$(round_median single "ttft_ms['p99']")"
printf 'concurrency %-3d         %8.1f output tok/s (%.2fx the single stream), TPOT mean %.2f ms, p99 %.2f ms\n' \
  "$concurrency" "$batched" "$(python3 -c "print($batched / $single)")" \
  "$(round_median batched "tpot_ms['mean']")" "$(round_median batched "tpot_ms['p99']")"
round_ratios=()
for i in $(seq "$rounds"); do
  round_ratios+=("$(python3 -c "print(f'{$(field "batched$i" output_throughput) / $(field "single$i" output_throughput):.2f}')")")
done
printf 'each round, concurrency %d / single stream: %s\n' "$concurrency" "${round_ratios[*]}"
printf 'saturating rate:        %8.3f req/s (%d requests at once, at most %d running), %.1f output tok/s\n' \
  "$saturating_rate" $((4 * concurrency)) "$concurrency" "$(field saturated "output_throughput")"
printf 'half that rate:         %8.3f req/s Poisson: TTFT mean %.1f ms, p99 %.1f ms; TPOT mean %.2f ms\n' \
  "$half_rate" "$(field half_rate "ttft_ms['mean']")" "$(field half_rate "ttft_ms['p99']")" \
  "$(field half_rate "tpot_ms['mean']")"
printf 'HTTP single stream:     TPOT median %.2f ms over %d runs (%s)\n' "$http_median" "$pairs" "${http_tpot[*]}"
printf 'bench generate:         %.2f ms/token median over %d runs (%s)\n' "$generate_median" "$pairs" "${generate_ms[*]}"
ratios=()
for i in $(seq 0 $((pairs - 1))); do
  ratios+=("$(python3 -c "print(f'{${generate_ms[$i]} / ${http_tpot[$i]}:.3f}')")")
done
printf 'each pair, HTTP rate / bench generate rate: %s\n' "${ratios[*]}"
printf 'HTTP rate / bench generate rate: %.3f\n' "$(python3 -c "print($generate_median / $http_median)")"
