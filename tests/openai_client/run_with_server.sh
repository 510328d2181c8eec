#!/usr/bin/env bash
# Starts `switchyard serve` with a small preset on a free port, runs the official openai client's
# checks (client_test.mjs) against it, then stops the server with SIGTERM, which must exit 0.
# Usage: run_with_server.sh SWITCHYARD_BINARY. Exits 77 ("skipped") when node or the openai
# package (scripts/install_deps.sh installs it) is missing.
set -uo pipefail
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v node > /dev/null || { echo "node is not installed: skipped"; exit 77; }
[ -d "$here/node_modules/openai" ] || { echo "the openai package is not installed (scripts/install_deps.sh): skipped"; exit 77; }

log=$(mktemp)
"$binary" serve --model tiny --port 0 > "$log" 2>&1 &
server=$!
trap 'kill -KILL "$server" 2> /dev/null; rm -f "$log"' EXIT

url=""
for _ in $(seq 1 600); do  # up to a minute on a busy machine
  url=$(grep -o 'http://[0-9.]*:[0-9]*' "$log" | head -n 1)
  [ -n "$url" ] && break
  kill -0 "$server" 2> /dev/null || { echo "the server exited:"; cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start within a minute:"; cat "$log"; exit 1; }

node "$here/client_test.mjs" "$url" tiny --no-chat-format
client=$?
kill -TERM "$server"
wait "$server"
stopped=$?
[ "$stopped" -eq 0 ] || { echo "the server exited with $stopped after SIGTERM:"; cat "$log"; }
[ "$client" -eq 0 ] && [ "$stopped" -eq 0 ]
