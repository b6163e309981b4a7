#!/usr/bin/env bash
# The usage ledger in PostgreSQL, measured (part 6 of `make bench`, BENCH_ONLY=ledger; or alone:
# bench/ledger.sh). Starts its own PostgreSQL on a free loopback port (initdb into a temporary folder; as
# root, initdb and postgres run as nobody through setpriv, since they refuse root), then:
#   1. writer throughput: build/ledger-bench pushes rows through the ledger (the real queue and writer
#      thread) into PostgreSQL, and into SQLite for comparison: rows per second sustained, none lost
#      (goal for PostgreSQL: >= 20,000 rows/s);
#   2. request latency: wrk (bench/chat.lua) against two Lexora instances in front of the same
#      lexora-sim, one with usage.store sqlite, one with usage.store postgres, rounds interleaved: req/s,
#      p50 and p99 (medians over the rounds) — the ledger is off the request path, so they should match.
# Prints a small report on stdout; logs on stderr. Every process it starts is stopped on exit.
# Knobs: LEXORA_BUILD_DIR (build), LEDGER_SECONDS (5: per writer run), BENCH_DURATION (10: s per wrk
# run), BENCH_ROUNDS (3), LEDGER_CONNS (32: wrk connections), BENCH_KEEP (1: keep the temp folder).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${LEXORA_BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
SECS=${LEDGER_SECONDS:-5}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${LEDGER_CONNS:-32}
KEEP=${BENCH_KEEP:-0}
MODEL=qwen3-32b

say() { printf '[ledger %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[[ -n $PG_BIN && -x $PG_BIN/initdb ]] || die "PostgreSQL is not installed (scripts/install-deps.sh installs postgresql)"
command -v wrk >/dev/null || die "wrk is needed"
for b in lexora lexora-sim ledger-bench; do [[ -x $BUILD_DIR/$b ]] || die "$BUILD_DIR/$b is not built"; done

PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lexora-ledger-bench.XXXXXX")
cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ $KEEP == 1 || $rc != 0 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg() { # runs a PostgreSQL program as nobody when we are root
    if [[ $(id -u) == 0 ]]; then setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; else "$@"; fi
}
NEXT_PORT=${BENCH_PORT_BASE:-18100}
NEXT_PORT=$((NEXT_PORT + 400)) # clear of run.sh's own ports
alloc_port() { # VAR: the next free loopback port
    while ss -Htln "sport = :$NEXT_PORT" 2>/dev/null | grep -q .; do NEXT_PORT=$((NEXT_PORT + 1)); done
    printf -v "$1" '%d' "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}
wait_port() { # PORT PID NAME
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$2" 2>/dev/null || die "$3 exited while starting"
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "$3 did not listen on $1"
}

# ---------- PostgreSQL ----------
[[ $(id -u) == 0 ]] && chown nobody "$WORK"
as_pg "$PG_BIN/initdb" -D "$WORK/data" -U lexora --auth=trust -E UTF8 --no-sync >"$WORK/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 5 "$WORK/initdb.log")"
alloc_port PG_PORT
# durable as a real server would be (fsync on, synchronous_commit on): the rate is the writer's, honestly
as_pg "$PG_BIN/postgres" -D "$WORK/data" -p "$PG_PORT" -k "$WORK" -c listen_addresses=127.0.0.1 >"$WORK/pg-server.log" 2>&1 &
PIDS+=($!)
wait_port "$PG_PORT" "${PIDS[-1]}" postgres
for ((i = 0; i < 100; i++)); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U lexora lexora
URL="postgresql://lexora@127.0.0.1:$PG_PORT/lexora"
say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"

# ---------- 1. writer throughput ----------
say "writer throughput: ${SECS}s per store"
PG_LINE=$("$BUILD_DIR/ledger-bench" postgres "$URL" "$SECS") || die "ledger-bench postgres failed: $PG_LINE"
SQ_LINE=$("$BUILD_DIR/ledger-bench" sqlite "$WORK/bench.db" "$SECS") || die "ledger-bench sqlite failed: $SQ_LINE"
say "$PG_LINE"
say "$SQ_LINE"
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ---------- 2. request latency, sqlite vs postgres ----------
alloc_port SIM_PORT
"$BUILD_DIR/lexora-sim" --host 127.0.0.1 --port "$SIM_PORT" --model "$MODEL" --max-batch 4096 --ttft-ms 0 \
    --tokens-per-sec 0 --batch-slowdown 0 --quiet >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT" "${PIDS[-1]}" lexora-sim
declare -A LX_PORT
for store in sqlite postgres; do
    alloc_port port
    LX_PORT[$store]=$port
    cat >"$WORK/$store.yaml" <<EOF
server: {host: "127.0.0.1", port: $port, max_connections: 4096}
vllm: {url: "http://127.0.0.1:$SIM_PORT", timeout: 60}
default_model: "$MODEL"
backends: {vllm: {url: "http://127.0.0.1:$SIM_PORT", max_concurrency: 4096, models: ["$MODEL"]}}
queue: {max_size: 100000, default_timeout: 60}
rate_limits: {default: {requests_per_minute: 0, tokens_per_minute: 0}}
logging: {level: "WARNING", format: "json"}
metrics: {enabled: false}
usage: {store: $store, db_path: "$WORK/lexora-usage.db", postgres_url: "$URL", gateway_id: "bench-$store"}
EOF
    "$BUILD_DIR/lexora" --config "$WORK/$store.yaml" >"$WORK/$store.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port" "${PIDS[-1]}" "lexora ($store)"
done
CSV=$WORK/latency.csv
: >"$CSV"
run_wrk() { # STORE ROUND SECONDS
    local out=$WORK/wrk-$1-$2.txt line
    wrk -t1 -c"$CONNS" -d"$3s" --timeout 5s --latency -s "$ROOT/bench/chat.lua" "http://127.0.0.1:${LX_PORT[$1]}" >"$out" 2>&1 ||
        die "wrk against $1 failed: $(tail -n 3 "$out")"
    line=$(grep '^BENCH ' "$out" | tail -n 1)
    ((${2} > 0)) || return 0
    echo "$1,$(field "$line" rps),$(field "$line" p50_us),$(field "$line" p99_us),$(field "$line" err_status)" >>"$CSV"
    say "$(printf '%-8s round %s: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms' "$1" "$2" "$(field "$line" rps)" \
        "$(awk -v v="$(field "$line" p50_us)" 'BEGIN{print v/1000}')" "$(awk -v v="$(field "$line" p99_us)" 'BEGIN{print v/1000}')")"
}
say "request latency: wrk -t1 -c$CONNS, ${DURATION}s x $ROUNDS rounds interleaved"
for store in sqlite postgres; do run_wrk "$store" 0 2; done # warm-up
for ((r = 1; r <= ROUNDS; r++)); do
    for store in sqlite postgres; do run_wrk "$store" "$r" "$DURATION"; done
done
sleep 1 # the last batch
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F, -v s="$1" -v c="$2" '$1 == s { print $c }' "$CSV"; }
PG_ROWS=$(as_pg "$PG_BIN/psql" -X -A -t -h 127.0.0.1 -p "$PG_PORT" -U lexora -d lexora \
    -c "SELECT count(*) FROM usage WHERE gateway_id = 'bench-postgres'")
lost_rows() { # STORE: rows its gateway could not record (lexora_usage_rows_lost_total, both reasons)
    curl -s --max-time 5 "http://127.0.0.1:${LX_PORT[$1]}/metrics" |
        awk '/^lexora_usage_rows_lost_total/ { s += $2 } END { print s + 0 }'
}

echo "6. Usage ledger (PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on loopback, fsync on)"
printf '   writer, rows/s sustained (none lost): postgres %s (goal >= 20000: %s), sqlite %s\n' \
    "$(field "$PG_LINE" rows_per_s)" "$(awk -v r="$(field "$PG_LINE" rows_per_s)" 'BEGIN { print (r >= 20000 ? "PASS" : "FAIL") }')" \
    "$(field "$SQ_LINE" rows_per_s)"
printf '   CPU per row (the whole process, every thread): postgres %s us, sqlite %s us\n' \
    "$(field "$PG_LINE" cpu_us_per_row)" "$(field "$SQ_LINE" cpu_us_per_row)"
printf '   request latency, wrk -t1 -c%s, %ss x %s rounds interleaved, medians (lexora -> lexora-sim):\n' "$CONNS" "$DURATION" "$ROUNDS"
printf '   %-9s %10s %9s %9s\n' store "req/s" "p50 ms" "p99 ms"
for store in sqlite postgres; do
    printf '   %-9s %10.0f %9.3f %9.3f\n' "$store" "$(col "$store" 2 | median)" \
        "$(col "$store" 3 | median | awk '{print $1/1000}')" "$(col "$store" 4 | median | awk '{print $1/1000}')"
done
echo "   rows in PostgreSQL from the postgres gateway: $PG_ROWS; rows lost: sqlite $(lost_rows sqlite), postgres $(lost_rows postgres)"
