#!/usr/bin/env bash
# make demo: lexora-sim (a stand-in for vLLM) on 127.0.0.1:8000 and Lexora on :8001 with the shipped
# config, then the curl lines to try. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

for port in 8000 8001; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo; echo "demo: stopped"
}
trap cleanup INT TERM EXIT

build/lexora-sim --host 127.0.0.1 --port 8000 --model qwen3-32b --quiet &
pids+=($!)
build/lexora --config config/lexora_config.yaml &
pids+=($!)

for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/8001) 2>/dev/null && break
  sleep 0.1
done

cat <<'MSG'

Lexora is running on http://127.0.0.1:8001 in front of lexora-sim (a simulated vLLM) on :8000.
Try, in another terminal:

  curl -s http://127.0.0.1:8001/v1/models

  curl -s http://127.0.0.1:8001/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"qwen3-32b","messages":[{"role":"user","content":"Hello"}],"max_tokens":20,"x_user_id":"alice"}'

  curl -N http://127.0.0.1:8001/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"qwen3-32b","messages":[{"role":"user","content":"Hello"}],"max_tokens":20,"stream":true}'

  curl -s http://127.0.0.1:8001/v1/chat/completions -d '{"model":"nope","messages":[]}'

Access-log lines appear below. Press Ctrl-C to stop both.

MSG
wait -n "${pids[@]}"
