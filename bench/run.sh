#!/usr/bin/env bash
# Lexora benchmarks, side by side on this machine, in one run (`make bench`; see bench/README.md):
#   1. non-streaming: wrk against nginx (the upstream, directly), nginx proxy_pass in front of it,
#      and Lexora in front of it; rounds interleaved, medians reported;
#   2. streaming memory: N concurrent SSE streams through Lexora to lexora-sim, then the same through nginx
#      proxy_pass (proxy_buffering off) to the same simulator; each proxy's RSS sampled;
#   3. the request-body micro-benchmark (build/body-bench), when it is built;
#   4. stream relay CPU: M streams at T tokens/s through nginx and through Lexora, both in front of the same
#      lexora-sim, rounds interleaved; the CPU each proxy spent, medians;
#   5. routing: the router's decision cost with 16 backends (build/route-bench), and a multi-turn chat
#      workload over 3 lexora-sim replicas per balancing strategy, with and without prefix affinity
#      (bench/multiturn.mjs);
#   6. the usage ledger in PostgreSQL (bench/ledger.sh): rows/s its writer sustains, and request latency
#      with usage.store sqlite vs postgres under the same wrk load against lexora-sim;
#   7. user-space instructions per request, nginx proxy_pass and Lexora each under valgrind's callgrind in
#      front of part 1's upstream: a count that other work on the machine does not move.
# Results go to bench/results/ (git-ignored); a summary table is printed at the end.
#
# Every process it starts is stopped on success, failure or Ctrl-C. Only 127.0.0.1 is used.
# Knobs (environment): LEXORA_BUILD_DIR (default build), BENCH_DURATION (s per wrk run, 10),
# BENCH_CONNS ("32 128"), BENCH_ROUNDS (3), BENCH_WARMUP (s, 2), BENCH_SSE_STREAMS (2000),
# BENCH_SSE_MAX_TOKENS (40), BENCH_SSE_TOKENS_PER_SEC (2), BENCH_PORT_BASE (18100),
# BENCH_RELAY_STREAMS (1000), BENCH_RELAY_TOKENS_PER_SEC (20), BENCH_RELAY_TOKENS (100: max_tokens, so
# 5 s per stream), BENCH_ICOUNT_SECS (5: the measured wrk run of part 7), BENCH_ONLY ("http sse body relay route
# ledger icount": which parts to run), BENCH_KEEP (1: keep the temp dir and its logs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${LEXORA_BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-"32 128"}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2}
SSE_STREAMS=${BENCH_SSE_STREAMS:-2000}
SSE_MAX_TOKENS=${BENCH_SSE_MAX_TOKENS:-40}
SSE_TPS=${BENCH_SSE_TOKENS_PER_SEC:-2}
PORT_BASE=${BENCH_PORT_BASE:-18100}
RELAY_STREAMS=${BENCH_RELAY_STREAMS:-1000}
RELAY_TPS=${BENCH_RELAY_TOKENS_PER_SEC:-20}
RELAY_TOKENS=${BENCH_RELAY_TOKENS:-100}
ICOUNT_SECS=${BENCH_ICOUNT_SECS:-5}
ONLY=${BENCH_ONLY:-"http sse body relay route ledger icount"}
KEEP=${BENCH_KEEP:-0}

RSS_TARGET_MIB=64
BODY_TARGET_GBS=1.0
MODEL=qwen3-32b
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$ROOT/bench/results/$STAMP
SUMMARY=$ROOT/bench/results/summary-$STAMP.txt
CLK_TCK=$(getconf CLK_TCK)

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# ---------- processes: every one we start is in PIDS; cleanup stops them all ----------

PIDS=()
WORK=""

stop_pid() { # pid: TERM, up to 5 s, then KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid did not stop on TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 || $rc != 0 ]]; then
            say "logs and configs kept in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# start_bg NAME LOG CMD...: starts CMD in the background, stdout+stderr to LOG; sets BG_PID.
start_bg() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
    say "started $name (pid $BG_PID)"
}

# run_fg LOG TIMEOUT CMD...: runs CMD bounded by TIMEOUT seconds, in the background so that a signal
# to this script is handled at once (the trap stops it); returns CMD's exit code.
run_fg() {
    local log=$1 limit=$2 pid rc=0
    shift 2
    timeout -k 5 "$limit" "$@" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# ---------- ports ----------

NEXT_PORT=$PORT_BASE
port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
alloc_port() { # VAR: the next free port from NEXT_PORT on
    local tries=0
    while ! port_free "$NEXT_PORT"; do
        NEXT_PORT=$((NEXT_PORT + 1))
        tries=$((tries + 1))
        ((tries < 500)) || die "no free port from $PORT_BASE on"
    done
    printf -v "$1" '%d' "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_http NAME PID URL LOG [SECONDS]: until URL answers anything over HTTP (10 s at most by default) while
# PID lives.
wait_http() {
    local name=$1 pid=$2 url=$3 log=$4 secs=${5:-10} i code
    for ((i = 0; i < secs * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited while starting; last lines of $log:"
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null) || true
        [[ $code != 000 && -n $code ]] && return 0
        sleep 0.1
    done
    say "$name did not answer on $url within $secs s; last lines of $log:"
    tail -n 20 "$log" >&2 || true
    return 1
}

# cpu_ticks PID...: user+system clock ticks used so far by the given processes.
cpu_ticks() {
    local t=0 p v
    for p in "$@"; do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

children_of() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }

# ---------- preflight ----------

for tool in curl ss awk timeout; do command -v "$tool" >/dev/null || die "$tool is needed"; done
if wants http; then
    command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
    command -v nginx >/dev/null || die "nginx is needed (apt-get install nginx-light or nginx)"
fi
if wants route; then command -v node >/dev/null || die "node is needed for the multi-turn workload"; fi
if wants sse || wants relay; then
    command -v node >/dev/null || die "node is needed for the SSE client"
    command -v nginx >/dev/null || die "nginx is needed (apt-get install nginx-light or nginx)"
fi

LEXORA=$BUILD_DIR/lexora
SIM=$BUILD_DIR/lexora-sim
BODY_BENCH=$BUILD_DIR/body-bench
ROUTE_BENCH=$BUILD_DIR/route-bench
[[ -x $LEXORA ]] || say "WARNING: $LEXORA is missing: the Lexora measurements are skipped"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if wants sse && [[ $NOFILE != unlimited ]] && ((NOFILE < 2 * SSE_STREAMS + 256)); then
    say "WARNING: open-file limit $NOFILE is low for $SSE_STREAMS streams (Lexora holds 2 per stream)"
fi

mkdir -p "$RESULTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lexora-bench.XXXXXX")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "results in $RESULTS, scratch in $WORK, open-file limit $NOFILE, $(nproc) cores, load average $LOAD_BEFORE"
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    say "WARNING: the machine is busy (load average $LOAD_BEFORE): numbers will be noisy; see 'top'"
fi

REQ_BODY='{"model":"qwen3-32b","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32,"temperature":0.7}'

# check_chat NAME PORT: one POST like wrk's must give 200 and a chat.completion.
check_chat() {
    local name=$1 port=$2 out=$WORK/check-$1.txt code
    code=$(curl -s -o "$out" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
        --data-binary "$REQ_BODY" "http://127.0.0.1:$port/v1/chat/completions") || code=000
    if [[ $code != 200 ]] || ! grep -q '"chat.completion"' "$out"; then
        say "$name: POST /v1/chat/completions gave $code: $(head -c 300 "$out" 2>/dev/null)"
        return 1
    fi
}

# gen_lexora_config FILE PORT METRICS_PORT BACKEND_URL MAX_CONNECTIONS
gen_lexora_config() {
    cat >"$1" <<EOF
# Generated by bench/run.sh: rate limits on but too high for one user to reach (wrk is one user;
# every request is still counted), a queue that never fills, and enough backend slots
# (max_concurrency) that admission control never holds a request back.
server:
  host: "127.0.0.1"
  port: $2
  max_connections: $5
vllm:
  url: "$4"
  timeout: 60
default_model: "$MODEL"
backends:
  vllm:
    url: "$4"
    max_concurrency: 4096
    models:
      - name: "$MODEL"
queue:
  max_size: 100000
  default_timeout: 60
rate_limits:
  default:
    requests_per_minute: 1000000000
    tokens_per_minute: 1000000000
logging:
  level: "INFO"
  format: "json"
metrics:
  enabled: true
  port: $3
EOF
}

# nginx_conf NAME TEMPLATE PORT [UPSTREAM_PORT]: $WORK/NAME with its nginx.conf filled in from TEMPLATE.
nginx_conf() {
    local dir=$WORK/$1
    mkdir -p "$dir/tmp"
    sed -e "s/@PORT@/$3/g" -e "s/@UPSTREAM_PORT@/${4:-0}/g" "$2" >"$dir/nginx.conf"
}

# start_nginx NAME TEMPLATE PORT [UPSTREAM_PORT]: sets NGX_PID (the master) and NGX_WORKER.
start_nginx() {
    local name=$1 port=$3 dir=$WORK/$1 i
    nginx_conf "$@"
    nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' ||
        die "$name: nginx -t failed (see $dir/error.log)"
    start_bg "$name" "$dir/stdout.log" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
    NGX_PID=$BG_PID
    wait_http "$name" "$NGX_PID" "http://127.0.0.1:$port/" "$dir/error.log" || die "$name did not start"
    NGX_WORKER=""
    for ((i = 0; i < 50; i++)); do
        NGX_WORKER=$(children_of "$NGX_PID" | awk '{print $1}')
        [[ -z $NGX_WORKER ]] || break
        sleep 0.1
    done
    [[ -n $NGX_WORKER ]] || die "$name: no worker process"
}

# ---------- 1. non-streaming ----------

CSV=$RESULTS/runs.csv
echo "conns,round,target,rps,p50_us,p90_us,p99_us,p999_us,max_us,requests,errors,cpu_us_per_req,busy_pct,idle_pct" >"$CSV"
HTTP_DONE=0
WRK_FAILURES=0
LEXORA_HTTP_OK=0
LEXORA_HTTP_NOTE=""

# machine_ticks: the machine's clock ticks so far, all and idle (idle + iowait), from /proc/stat.
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat; }

# bench_one TARGET PORT CONNS ROUND SECONDS CPU_PIDS...: one wrk run; appends to the CSV unless ROUND is 0 (warm-up).
bench_one() {
    local target=$1 port=$2 conns=$3 round=$4 secs=$5
    shift 5
    local raw=$RESULTS/wrk-c$conns-$target-r$round.txt t0 t1 m0 m1 line rc=0
    t0=$(cpu_ticks "$@")
    m0=$(machine_ticks)
    run_fg "$raw" $((secs + 30)) wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s --latency \
        -s "$ROOT/bench/chat.lua" "http://127.0.0.1:$port" || rc=$?
    m1=$(machine_ticks)
    t1=$(cpu_ticks "$@")
    line=$(grep '^BENCH ' "$raw" | tail -n 1) || true
    if [[ $rc != 0 || -z $line ]]; then
        say "$target c=$conns round $round: wrk failed (exit $rc); see $raw"
        return 1
    fi
    ((round > 0)) || return 0
    # shellcheck disable=SC2034 # set by the eval below
    local rps p50_us p90_us p99_us p999_us max_us requests duration_us err_connect err_read err_write \
        err_status err_timeout cpu_us
    eval "$(echo "${line#BENCH }" | tr ' ' '\n' | grep -E '^[a-z0-9_]+=[0-9.]+$')"
    local errors=$((err_connect + err_read + err_write + err_status + err_timeout))
    cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$requests" \
        'BEGIN { printf "%.1f", (n > 0 ? d / hz * 1e6 / n : 0) }')
    # busy: the process's CPU over the run's wall time (100 = one core); idle: the machine's idle share
    local busy idle
    busy=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v us="$duration_us" 'BEGIN { printf "%.0f", (us > 0 ? d / hz * 1e8 / us : 0) }')
    idle=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[1] - x[1]
        printf "%.0f", (t > 0 ? (y[2] - x[2]) * 100 / t : 0) }')
    echo "$conns,$round,$target,$rps,$p50_us,$p90_us,$p99_us,$p999_us,$max_us,$requests,$errors,$cpu_us,$busy,$idle" >>"$CSV"
    say "$(printf '%-6s c=%-4s round %s: %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %s' "$target" "$conns" \
        "$round" "$rps" "$(awk -v v="$p50_us" 'BEGIN{print v/1000}')" "$(awk -v v="$p99_us" 'BEGIN{print v/1000}')" \
        "$errors")"
}

if wants http; then
    alloc_port UP_PORT
    alloc_port PROXY_PORT
    alloc_port LX_PORT
    alloc_port LX_METRICS_PORT
    say "ports: upstream $UP_PORT, nginx proxy $PROXY_PORT, lexora $LX_PORT (metrics $LX_METRICS_PORT)"

    start_nginx upstream "$ROOT/bench/nginx/upstream.conf.in" "$UP_PORT"
    UP_WORKER=$NGX_WORKER
    UP_NGX=$NGX_PID
    start_nginx proxy "$ROOT/bench/nginx/proxy.conf.in" "$PROXY_PORT" "$UP_PORT"
    PROXY_WORKER=$NGX_WORKER
    PROXY_NGX=$NGX_PID
    check_chat direct "$UP_PORT" || die "the upstream nginx does not answer as expected"
    check_chat nginx "$PROXY_PORT" || die "the nginx proxy does not answer as expected"

    TARGETS=(direct nginx)
    if [[ -x $LEXORA ]]; then
        LX_DIR=$WORK/lexora
        mkdir -p "$LX_DIR"
        gen_lexora_config "$LX_DIR/lexora.yaml" "$LX_PORT" "$LX_METRICS_PORT" "http://127.0.0.1:$UP_PORT" 8192
        if ! "$LEXORA" --check-config --config "$LX_DIR/lexora.yaml" >"$LX_DIR/check.txt" 2>&1; then
            LEXORA_HTTP_NOTE="lexora --check-config rejected the generated config: $(tr '\n' ' ' <"$LX_DIR/check.txt")"
        else
            start_bg lexora "$LX_DIR/access.log" "$LEXORA" --config "$LX_DIR/lexora.yaml"
            LX_PID=$BG_PID
            if ! wait_http lexora "$LX_PID" "http://127.0.0.1:$LX_PORT/v1/models" "$LX_DIR/access.log"; then
                LEXORA_HTTP_NOTE="lexora did not start (see its log)"
            elif ! check_chat lexora "$LX_PORT"; then
                LEXORA_HTTP_NOTE="lexora did not answer the chat request with 200 + a chat.completion"
            else
                LEXORA_HTTP_OK=1
                TARGETS+=(lexora)
            fi
        fi
        [[ -z $LEXORA_HTTP_NOTE ]] || say "WARNING: $LEXORA_HTTP_NOTE — Lexora is left out of part 1"
    else
        LEXORA_HTTP_NOTE="$LEXORA not built"
    fi

    port_of() { case $1 in direct) echo "$UP_PORT" ;; nginx) echo "$PROXY_PORT" ;; lexora) echo "$LX_PORT" ;; esac; }
    cpu_pids_of() { case $1 in direct) echo "$UP_WORKER" ;; nginx) echo "$PROXY_WORKER" ;; lexora) echo "$LX_PID" ;; esac; }

    say "part 1: wrk -t1, ${DURATION}s per run, connections: $CONNS, $ROUNDS rounds, targets: ${TARGETS[*]}"
    for t in "${TARGETS[@]}"; do # warm-up: connection pools, page cache, CPU frequency
        # shellcheck disable=SC2046
        bench_one "$t" "$(port_of "$t")" 32 0 "$WARMUP" $(cpu_pids_of "$t") || die "warm-up of $t failed"
    done
    for c in $CONNS; do
        for ((r = 1; r <= ROUNDS; r++)); do
            for t in "${TARGETS[@]}"; do
                # shellcheck disable=SC2046
                bench_one "$t" "$(port_of "$t")" "$c" "$r" "$DURATION" $(cpu_pids_of "$t") ||
                    WRK_FAILURES=$((WRK_FAILURES + 1))
                if [[ $t == lexora ]] && ! kill -0 "$LX_PID" 2>/dev/null; then
                    die "lexora died during c=$c round $r; last log lines: $(tail -n 5 "$LX_DIR/access.log")"
                fi
            done
        done
    done
    HTTP_DONE=1

    if ((LEXORA_HTTP_OK)); then
        LX_LOG_LINES=$(wc -l <"$LX_DIR/access.log")
        LX_LOG_PROBLEMS=$(grep -ciE '"level":"(warn|warning|error)"|\b(WARN|WARNING|ERROR)\b' "$LX_DIR/access.log" || true)
        grep -iE '"level":"(warn|warning|error)"|\b(WARN|WARNING|ERROR)\b' "$LX_DIR/access.log" | head -n 20 \
            >"$RESULTS/lexora-http-problems.log" || true
        tail -n 3 "$LX_DIR/access.log" >"$RESULTS/lexora-http-log-tail.log" || true
        # Requests still in flight when wrk stops are cut off by the client: those show as non-200.
        LX_LOG_STATUSES=$(grep -o '"status":[0-9]*' "$LX_DIR/access.log" | sort | uniq -c |
            awk '{ sub("\"status\":", "", $2); printf "%s%s x %s", (NR > 1 ? ", " : ""), $2, $1 }') || true
        LX_HTTP_RSS=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$LX_PID/status" 2>/dev/null || echo "?")
        stop_pid "$LX_PID"
        forget_pid "$LX_PID"
    fi
    NGX_LOG_LINES=$(wc -l <"$WORK/proxy/access.log")
    grep -v ' 200 ' "$WORK/proxy/access.log" | head -n 20 >"$RESULTS/nginx-proxy-non200.log" || true
    for p in "$PROXY_NGX" "$UP_NGX"; do # free the cores for part 2
        stop_pid "$p"
        forget_pid "$p"
    done
fi

# ---------- 2. streaming ----------

SSE_NOTE=""
SSE_JSON=$RESULTS/sse.json
SSE_DIRECT_JSON=$RESULTS/sse-direct.json
SSE_NGINX_JSON=$RESULTS/sse-nginx.json
if wants sse; then
    if [[ ! -x $LEXORA ]]; then
        SSE_NOTE="skipped: $LEXORA not built"
    elif [[ ! -x $SIM ]]; then
        SSE_NOTE="skipped: $SIM not built"
    else
        alloc_port SIM_PORT
        alloc_port LXS_PORT
        alloc_port LXS_METRICS_PORT
        SIM_DIR=$WORK/sim
        LXS_DIR=$WORK/lexora-sse
        mkdir -p "$SIM_DIR" "$LXS_DIR"
        say "part 2: $SSE_STREAMS SSE streams through Lexora (port $LXS_PORT) to lexora-sim (port $SIM_PORT)"
        start_bg lexora-sim "$SIM_DIR/sim.log" "$SIM" --host 127.0.0.1 --port "$SIM_PORT" --model "$MODEL" \
            --max-batch 4096 --tokens-per-sec "$SSE_TPS" --ttft-ms 100 --batch-slowdown 0 --quiet
        SIM_PID=$BG_PID
        if ! wait_http lexora-sim "$SIM_PID" "http://127.0.0.1:$SIM_PORT/health" "$SIM_DIR/sim.log"; then
            SSE_NOTE="lexora-sim did not start"
        else
            gen_lexora_config "$LXS_DIR/lexora.yaml" "$LXS_PORT" "$LXS_METRICS_PORT" \
                "http://127.0.0.1:$SIM_PORT" $((SSE_STREAMS * 2 + 1024))
            if ! "$LEXORA" --check-config --config "$LXS_DIR/lexora.yaml" >"$LXS_DIR/check.txt" 2>&1; then
                SSE_NOTE="lexora --check-config rejected the SSE config: $(tr '\n' ' ' <"$LXS_DIR/check.txt")"
            else
                start_bg lexora-sse "$LXS_DIR/access.log" "$LEXORA" --config "$LXS_DIR/lexora.yaml"
                LXS_PID=$BG_PID
                if ! wait_http lexora-sse "$LXS_PID" "http://127.0.0.1:$LXS_PORT/v1/models" "$LXS_DIR/access.log"; then
                    SSE_NOTE="lexora did not start"
                fi
            fi
        fi
        if [[ -z $SSE_NOTE ]]; then
            # One short stream first: it must end with data: [DONE].
            curl -sN --max-time 15 -H 'Content-Type: application/json' \
                --data-binary "{\"model\":\"$MODEL\",\"stream\":true,\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
                "http://127.0.0.1:$LXS_PORT/v1/chat/completions" >"$RESULTS/sse-check.txt" 2>&1 || true
            grep -q '^data: \[DONE\]' "$RESULTS/sse-check.txt" ||
                say "WARNING: the check stream did not end with data: [DONE]: $(head -c 300 "$RESULTS/sse-check.txt")"
            # Control: the same burst straight to the simulator, short streams, to tell the client's and the
            # simulator's share of the time to the first event from Lexora's.
            run_fg "$RESULTS/sse-direct-client.log" 60 node "$ROOT/bench/sse_client.js" \
                --port "$SIM_PORT" --model "$MODEL" --streams "$SSE_STREAMS" --max-tokens 2 \
                --pid "$SIM_PID" --samples 1 --open-timeout-s 20 --total-timeout-s 30 --out "$SSE_DIRECT_JSON" ||
                say "WARNING: the control burst straight to lexora-sim did not complete every stream"
            SSE_SECS=$(awk -v t="$SSE_MAX_TOKENS" -v r="$SSE_TPS" 'BEGIN { printf "%d", t / r + 0.999 }')
            SSE_RC=0
            run_fg "$RESULTS/sse-client.log" $((SSE_SECS + 90)) node "$ROOT/bench/sse_client.js" \
                --port "$LXS_PORT" --model "$MODEL" --streams "$SSE_STREAMS" --max-tokens "$SSE_MAX_TOKENS" \
                --pid "$LXS_PID" --samples 5 --interval-ms 1000 --open-timeout-s 20 \
                --total-timeout-s $((SSE_SECS + 40)) --out "$SSE_JSON" || SSE_RC=$?
            sed -n '/^sse_client:/p' "$RESULTS/sse-client.log" >&2 || true
            if ! kill -0 "$LXS_PID" 2>/dev/null; then
                SSE_NOTE="lexora DIED during the SSE run; last log lines: $(tail -n 5 "$LXS_DIR/access.log" | tr '\n' ' ')"
            fi
            [[ -s $SSE_JSON ]] || SSE_NOTE="${SSE_NOTE:+$SSE_NOTE; }the SSE client gave no result (exit $SSE_RC)"
            LXS_LOG_PROBLEMS=$(grep -ciE '"level":"(warn|warning|error)"|\b(WARN|WARNING|ERROR)\b' "$LXS_DIR/access.log" || true)
            grep -iE '"level":"(warn|warning|error)"|\b(WARN|WARNING|ERROR)\b' "$LXS_DIR/access.log" | head -n 20 \
                >"$RESULTS/lexora-sse-problems.log" || true
            stop_pid "$LXS_PID" # the cores are the next run's
            forget_pid "$LXS_PID"
            # The same burst through nginx proxy_pass (proxy_buffering off) to the same simulator.
            alloc_port NGS_PORT
            start_nginx nginx-sse "$ROOT/bench/nginx/proxy-sse.conf.in" "$NGS_PORT" "$SIM_PORT"
            NGS_PID=$NGX_PID
            say "part 2: $SSE_STREAMS SSE streams through nginx (port $NGS_PORT, worker $NGX_WORKER) to the same lexora-sim"
            run_fg "$RESULTS/sse-nginx-client.log" $((SSE_SECS + 90)) node "$ROOT/bench/sse_client.js" \
                --port "$NGS_PORT" --model "$MODEL" --streams "$SSE_STREAMS" --max-tokens "$SSE_MAX_TOKENS" \
                --pid "$NGX_WORKER" --samples 5 --interval-ms 1000 --open-timeout-s 20 \
                --total-timeout-s $((SSE_SECS + 40)) --out "$SSE_NGINX_JSON" || true
            sed -n '/^sse_client:/p' "$RESULTS/sse-nginx-client.log" >&2 || true
            [[ -s $SSE_NGINX_JSON ]] || SSE_NOTE="${SSE_NOTE:+$SSE_NOTE; }the SSE client gave no result for nginx"
        fi
        for p in ${LXS_PID:-} ${NGS_PID:-} ${SIM_PID:-}; do
            stop_pid "$p"
            forget_pid "$p"
        done
    fi
fi

# ---------- 3. body micro-benchmark ----------

BODY_NOTE=""
BODY_OUT=$RESULTS/body-bench.txt
if wants body; then
    if [[ -x $BODY_BENCH ]]; then
        say "part 3: $BODY_BENCH"
        run_fg "$BODY_OUT" 120 "$BODY_BENCH" || BODY_NOTE="body-bench exited with $?"
        cat "$BODY_OUT" >&2
    else
        BODY_NOTE="skipped: $BODY_BENCH not built"
    fi
fi

# ---------- 4. stream relay CPU ----------

RELAY_NOTE=""
RELAY_CSV=$RESULTS/relay.csv
RELAY_DONE=0
if wants relay; then
    if [[ ! -x $LEXORA || ! -x $SIM ]]; then
        RELAY_NOTE="skipped: $LEXORA or $SIM not built"
    else
        alloc_port RSIM_PORT
        alloc_port RLX_PORT
        alloc_port RLX_METRICS_PORT
        alloc_port RNG_PORT
        RSIM_DIR=$WORK/relay-sim
        RLX_DIR=$WORK/lexora-relay
        mkdir -p "$RSIM_DIR" "$RLX_DIR"
        start_bg lexora-sim-relay "$RSIM_DIR/sim.log" "$SIM" --host 127.0.0.1 --port "$RSIM_PORT" --model "$MODEL" \
            --max-batch 4096 --tokens-per-sec "$RELAY_TPS" --ttft-ms 100 --batch-slowdown 0 --quiet
        RSIM_PID=$BG_PID
        wait_http lexora-sim "$RSIM_PID" "http://127.0.0.1:$RSIM_PORT/health" "$RSIM_DIR/sim.log" ||
            die "lexora-sim (relay) did not start"
        gen_lexora_config "$RLX_DIR/lexora.yaml" "$RLX_PORT" "$RLX_METRICS_PORT" "http://127.0.0.1:$RSIM_PORT" \
            $((RELAY_STREAMS * 2 + 1024))
        start_bg lexora-relay "$RLX_DIR/access.log" "$LEXORA" --config "$RLX_DIR/lexora.yaml"
        RLX_PID=$BG_PID
        wait_http lexora "$RLX_PID" "http://127.0.0.1:$RLX_PORT/v1/models" "$RLX_DIR/access.log" ||
            die "lexora (relay) did not start"
        start_nginx nginx-relay "$ROOT/bench/nginx/proxy-sse.conf.in" "$RNG_PORT" "$RSIM_PORT"
        RNG_PID=$NGX_PID
        RNG_WORKER=$NGX_WORKER
        RELAY_SECS=$(awk -v t="$RELAY_TOKENS" -v r="$RELAY_TPS" 'BEGIN { printf "%d", t / r + 0.999 }')
        say "part 4: $RELAY_STREAMS streams x $RELAY_TOKENS tokens at $RELAY_TPS tokens/s through nginx and Lexora, $ROUNDS rounds"
        echo "round,target,cpu_ms,events,completed,streams,us_per_event" >"$RELAY_CSV"
        relay_one() { # TARGET PORT PID ROUND
            local out=$RESULTS/relay-$1-r$4.json t0 t1
            t0=$(cpu_ticks "$3")
            run_fg "$RESULTS/relay-$1-r$4.log" $((RELAY_SECS + 90)) node "$ROOT/bench/sse_client.js" \
                --port "$2" --model "$MODEL" --streams "$RELAY_STREAMS" --max-tokens "$RELAY_TOKENS" \
                --samples 1 --open-timeout-s 30 --total-timeout-s $((RELAY_SECS + 60)) --out "$out" || true
            t1=$(cpu_ticks "$3")
            [[ -s $out ]] || { RELAY_NOTE="the SSE client gave no result for $1 round $4"; return 0; }
            node -e '
                const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
                const ms = (+process.argv[2]) / (+process.argv[3]) * 1000;
                console.log([process.argv[4], process.argv[5], ms.toFixed(0), r.events, r.completed, r.streams,
                    (r.events ? ms * 1000 / r.events : 0).toFixed(2)].join(","));
            ' "$out" $((t1 - t0)) "$CLK_TCK" "$4" "$1" >>"$RELAY_CSV"
            say "relay $1 round $4: $(tail -n 1 "$RELAY_CSV")"
        }
        # Warm-up: connection pools on both.
        relay_one nginx "$RNG_PORT" "$RNG_WORKER" 0
        relay_one lexora "$RLX_PORT" "$RLX_PID" 0
        for ((r = 1; r <= ROUNDS; r++)); do
            relay_one nginx "$RNG_PORT" "$RNG_WORKER" "$r"
            relay_one lexora "$RLX_PORT" "$RLX_PID" "$r"
        done
        kill -0 "$RLX_PID" 2>/dev/null || RELAY_NOTE="lexora DIED during the relay run"
        RELAY_DONE=1
        for p in "$RLX_PID" "$RNG_PID" "$RSIM_PID"; do
            stop_pid "$p"
            forget_pid "$p"
        done
    fi
fi

# ---------- 5. routing ----------

ROUTE_NOTE=""
ROUTE_OUT=$RESULTS/route.txt
if wants route; then
    say "part 5: $ROUTE_BENCH, then bench/multiturn.mjs"
    if [[ -x $ROUTE_BENCH ]]; then
        run_fg "$ROUTE_OUT" 300 "$ROUTE_BENCH" 300000 || ROUTE_NOTE="route-bench exited with $?"
    else
        ROUTE_NOTE="skipped: $ROUTE_BENCH not built"
    fi
    run_fg "$RESULTS/multiturn.txt" 600 node "$ROOT/bench/multiturn.mjs" --lexora "$LEXORA" --sim "$SIM" ||
        ROUTE_NOTE="${ROUTE_NOTE:+$ROUTE_NOTE; }multiturn.mjs exited with $?"
    cat "$RESULTS/multiturn.txt" >>"$ROUTE_OUT"
    cat "$ROUTE_OUT" >&2
fi

# ---------- 6. the usage ledger in PostgreSQL ----------

LEDGER_NOTE=""
LEDGER_OUT=$RESULTS/ledger.txt
if wants ledger; then
    say "part 6: bench/ledger.sh (PostgreSQL on loopback; ledger-bench, then wrk: sqlite vs postgres store)"
    LEXORA_BUILD_DIR=$BUILD_DIR BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS BENCH_PORT_BASE=$NEXT_PORT \
        run_fg "$LEDGER_OUT" $((120 + 2 * ROUNDS * (DURATION + 5))) "$ROOT/bench/ledger.sh" ||
        LEDGER_NOTE="bench/ledger.sh exited with $? (see $LEDGER_OUT)"
    grep -v '^\[ledger ' "$LEDGER_OUT" >&2 || true
fi

# ---------- 7. instructions per request ----------

ICOUNT_NOTE=""
ICOUNT_CSV=$RESULTS/icount.csv
# icount_one NAME PORT OUTFILE CMD...: CMD under callgrind; counts from a warm-up's end to the end of one wrk run.
icount_one() {
    local name=$1 port=$2 out=$3 raw=$RESULTS/icount-wrk-$1.txt log=$RESULTS/icount-$1.log requests ir
    shift 3
    start_bg "$name under callgrind" "$log" valgrind --tool=callgrind --callgrind-out-file="$out" "$@"
    local pid=$BG_PID
    wait_http "$name under callgrind" "$pid" "http://127.0.0.1:$port/v1/models" "$log" 30 && # valgrind starts slowly
        run_fg "$RESULTS/icount-warmup-$name.txt" 60 wrk -t1 -c8 -d2s -s "$ROOT/bench/chat.lua" "http://127.0.0.1:$port" &&
        callgrind_control -z "$pid" >/dev/null 2>&1 &&
        run_fg "$raw" $((ICOUNT_SECS + 60)) wrk -t1 -c8 -d"${ICOUNT_SECS}s" -s "$ROOT/bench/chat.lua" \
            "http://127.0.0.1:$port" &&
        callgrind_control -d "$pid" >/dev/null 2>&1 || ICOUNT_NOTE="$name: the callgrind run failed (see $RESULTS)"
    stop_pid "$pid"
    forget_pid "$pid"
    requests=$(grep -o 'requests=[0-9]*' "$raw" 2>/dev/null | cut -d= -f2)
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$out.1" 2>/dev/null)
    [[ -n $requests && -n $ir ]] || return 0
    echo "$name,$requests,$ir" >>"$ICOUNT_CSV"
    callgrind_annotate --inclusive=yes "$out.1" >"$RESULTS/icount-$name-inclusive.txt" 2>/dev/null || true
}

if wants icount; then
    if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
        ICOUNT_NOTE="skipped: valgrind is not installed (scripts/install-deps.sh)"
    elif [[ ! -x $LEXORA ]]; then
        ICOUNT_NOTE="skipped: $LEXORA not built"
    else
        echo "target,requests,instructions" >"$ICOUNT_CSV"
        alloc_port IC_UP_PORT
        alloc_port IC_PROXY_PORT
        alloc_port IC_LX_PORT
        alloc_port IC_LX_METRICS_PORT
        say "part 7: instructions per request under callgrind (wrk -t1 -c8, ${ICOUNT_SECS}s after a 2 s warm-up)"
        start_nginx icount-upstream "$ROOT/bench/nginx/upstream.conf.in" "$IC_UP_PORT"
        IC_UP_NGX=$NGX_PID
        nginx_conf icount-proxy "$ROOT/bench/nginx/proxy.conf.in" "$IC_PROXY_PORT" "$IC_UP_PORT"
        IC_PX_DIR=$WORK/icount-proxy
        icount_one nginx "$IC_PROXY_PORT" "$RESULTS/callgrind-nginx.out" nginx -e "$IC_PX_DIR/error.log" \
            -p "$IC_PX_DIR" -c "$IC_PX_DIR/nginx.conf" -g 'daemon off; master_process off;'
        IC_LX_DIR=$WORK/icount-lexora
        mkdir -p "$IC_LX_DIR"
        gen_lexora_config "$IC_LX_DIR/lexora.yaml" "$IC_LX_PORT" "$IC_LX_METRICS_PORT" "http://127.0.0.1:$IC_UP_PORT" 8192
        icount_one lexora "$IC_LX_PORT" "$RESULTS/callgrind-lexora.out" "$LEXORA" --config "$IC_LX_DIR/lexora.yaml"
        stop_pid "$IC_UP_NGX"
        forget_pid "$IC_UP_NGX"
    fi
fi

# ---------- summary ----------

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { # CONNS TARGET COLUMN-NAME → the values over the rounds, one a line
    awk -F, -v c="$1" -v t="$2" -v name="$3" 'NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i; next }
        $1 == c && $3 == t { print $k[name] }' "$CSV"
}

{
    echo "Lexora benchmark — $(date '+%Y-%m-%d %H:%M:%S %Z'), $(nproc) cores, $(uname -r)"
    echo "load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
    echo "lexora: $LEXORA$( [[ -x $LEXORA ]] && echo " ($("$LEXORA" --version 2>/dev/null || true))")"
    echo
    if ((HTTP_DONE)); then
        echo "1. Non-streaming POST /v1/chat/completions (~210 B request, ~650 B answer), wrk -t1, ${DURATION} s x $ROUNDS rounds interleaved, medians"
        echo "   direct = nginx upstream alone; nginx = nginx proxy_pass (keepalive 64, access_log on); lexora = Lexora (JSON access log on)"
        printf '   %-5s %-7s %10s %19s %9s %9s %9s %8s %12s %7s %7s\n' conns target "req/s" "(min..max)" "p50 ms" "p99 ms" "max ms" errors \
            "CPU us/req" "busy %" "idle %"
        for c in $CONNS; do
            for t in "${TARGETS[@]}"; do
                rps=$(col "$c" "$t" rps | median)
                [[ -n $rps ]] || { printf '   %-5s %-7s %10s\n' "$c" "$t" "no data"; continue; }
                lo=$(col "$c" "$t" rps | sort -g | head -n 1)
                hi=$(col "$c" "$t" rps | sort -g | tail -n 1)
                p50=$(col "$c" "$t" p50_us | median)
                p99=$(col "$c" "$t" p99_us | median)
                mx=$(col "$c" "$t" max_us | sort -g | tail -n 1)
                errs=$(col "$c" "$t" errors | awk '{ s += $1 } END { print s + 0 }')
                cpu=$(col "$c" "$t" cpu_us_per_req | median)
                busy=$(col "$c" "$t" busy_pct | median)
                idle=$(col "$c" "$t" idle_pct | median)
                printf '   %-5s %-7s %10.0f %19s %9.2f %9.2f %9.2f %8s %12s %7s %7s\n' "$c" "$t" "$rps" \
                    "($(printf '%.0f..%.0f' "$lo" "$hi"))" "$(awk -v v="$p50" 'BEGIN{print v/1000}')" \
                    "$(awk -v v="$p99" 'BEGIN{print v/1000}')" "$(awk -v v="$mx" 'BEGIN{print v/1000}')" "$errs" "$cpu" \
                    "$busy" "$idle"
            done
            if ((LEXORA_HTTP_OK)); then
                nr=$(col "$c" nginx rps | median)
                lr=$(col "$c" lexora rps | median)
                np=$(col "$c" nginx p99_us | median)
                lp=$(col "$c" lexora p99_us | median)
                nc=$(col "$c" nginx cpu_us_per_req | median)
                lc=$(col "$c" lexora cpu_us_per_req | median)
                if [[ -n $nr && -n $lr && -n $np && -n $lp ]]; then
                    awk -v c="$c" -v nr="$nr" -v lr="$lr" -v np="$np" -v lp="$lp" -v nc="$nc" -v lc="$lc" 'BEGIN {
                        t = lr / nr; p = lp / np; u = (nc > 0 ? lc / nc : 0)
                        printf "   %-5s lexora/nginx: throughput %.2fx (target >= 1.00: %s), p99 %.2fx (target <= 1.00: %s), CPU/req %.2fx\n",
                            c, t, (t >= 1 ? "PASS" : "FAIL"), p, (p <= 1 ? "PASS" : "FAIL"), u }'
                fi
            fi
        done
        echo "   CPU us/req: CPU time of the process under test (direct: the upstream worker; nginx: the proxy's worker;"
        echo "   lexora: the lexora process) per request; the upstream's own CPU is not in the proxied rows."
        echo "   busy %: that process's CPU time over the run's wall time (100 = one core); idle %: the machine's idle"
        echo "   share during the run. A proxy near 100 % busy while the machine is idle is limited by its own one thread."
        [[ -z $LEXORA_HTTP_NOTE ]] || echo "   NOTE: $LEXORA_HTTP_NOTE"
        ((WRK_FAILURES == 0)) || echo "   NOTE: $WRK_FAILURES wrk runs failed (see the wrk-*.txt files)"
        if ((LEXORA_HTTP_OK)); then
            echo "   lexora log: $LX_LOG_LINES lines, $LX_LOG_PROBLEMS warning/error lines, statuses: ${LX_LOG_STATUSES:-?};" \
                "VmHWM after part 1: $LX_HTTP_RSS MiB"
        fi
        echo "   nginx proxy access log: $NGX_LOG_LINES lines"
    else
        echo "1. Non-streaming: not run"
    fi
    echo
    if [[ -s $SSE_JSON ]]; then
        # shellcheck disable=SC2016 # JavaScript, not shell
        node -e '
            const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
            const target = +process.argv[2];
            const pass = r.peak_rss_mib !== null && r.hwm_mib !== null && Math.max(r.peak_rss_mib, r.hwm_mib) < target
              && r.max_open_during_samples === r.streams;
            const base = r.mem_baseline && r.mem_baseline.rss_kib ? (r.mem_baseline.rss_kib / 1024).toFixed(1) : "?";
            const after = r.mem_after && r.mem_after.rss_kib ? (r.mem_after.rss_kib / 1024).toFixed(1) : "?";
            console.log(`2. Streaming: ${r.streams} SSE streams at once through Lexora to lexora-sim (max_tokens ${r.max_tokens})`);
            console.log(`   streams receiving at once: ${r.receiving_at_once}/${r.streams} (all within ${r.all_open_ms} ms;` +
              ` ${r.min_open_during_samples}..${r.max_open_during_samples} open during the ${r.mem_samples.length} memory samples)`);
            console.log(`   Lexora RSS: idle ${base} MiB, peak while streaming ${r.peak_rss_mib} MiB, VmHWM ${r.hwm_mib} MiB,` +
              ` after ${after} MiB — target < ${target} MiB: ${pass ? "PASS" : "FAIL"}`);
            console.log(`   completed ${r.completed}/${r.streams}, closed at the deadline ${r.closed_at_deadline},` +
              ` mid-stream errors ${r.midstream_errors}, statuses ${JSON.stringify(r.statuses)}, client errors ${JSON.stringify(r.errors)}`);
            if (r.mem_baseline && r.mem_baseline.rss_kib && r.peak_rss_mib !== null)
              console.log(`   memory per stream: ${((r.peak_rss_mib * 1024 - r.mem_baseline.rss_kib) / r.streams).toFixed(1)} KiB` +
                ` ((peak - idle) / streams; Lexora holds a client and an upstream connection for each)`);
            console.log(`   received ${r.events} events, ${(r.bytes / 1048576).toFixed(1)} MiB; done after ${r.finished_ms} ms`);
            let d = null;
            try { d = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8")); } catch (e) { }
            const fe = (x) => `p50 ${x.first_event_ms.p50} ms, p99 ${x.first_event_ms.p99} ms, max ${x.first_event_ms.max} ms`;
            console.log(`   first event, from the start of the burst: through Lexora ${fe(r)}`);
            if (d) console.log(`   (control, same burst straight to lexora-sim: ${fe(d)}, completed ${d.completed}/${d.streams};` +
              ` the node client needs ~0.5 ms per stream to open the burst)`);
            let n = null;
            try { n = JSON.parse(require("fs").readFileSync(process.argv[4], "utf8")); } catch (e) { }
            const per = (x) => x && x.mem_baseline && x.mem_baseline.rss_kib && x.peak_rss_mib !== null
              ? (x.peak_rss_mib * 1024 - x.mem_baseline.rss_kib) / x.streams : null;
            if (n) {
              const lp = per(r), np = per(n);
              console.log(`   nginx proxy_pass (proxy_buffering off, 1 worker), same burst to the same simulator: worker RSS idle` +
                ` ${(n.mem_baseline.rss_kib / 1024).toFixed(1)} MiB, peak ${n.peak_rss_mib} MiB; completed ${n.completed}/${n.streams},` +
                ` ${n.receiving_at_once} receiving at once`);
              if (lp !== null && np !== null)
                console.log(`   memory per open stream: lexora ${lp.toFixed(1)} KiB, nginx ${np.toFixed(1)} KiB:` +
                  ` lexora/nginx ${(lp / np).toFixed(2)}x (target <= 1.00: ${lp <= np ? "PASS" : "FAIL"})`);
            }
        ' "$SSE_JSON" "$RSS_TARGET_MIB" "$SSE_DIRECT_JSON" "$SSE_NGINX_JSON"
        echo "   lexora log: ${LXS_LOG_PROBLEMS:-?} warning/error lines"
        [[ -z $SSE_NOTE ]] || echo "   NOTE: $SSE_NOTE"
    else
        echo "2. Streaming: ${SSE_NOTE:-not run}"
    fi
    echo
    if [[ -s $BODY_OUT ]]; then
        echo "3. Request-body handling ($BODY_BENCH; target >= $BODY_TARGET_GBS GB/s on a 128 KB request):"
        sed 's/^/   /' "$BODY_OUT"
        # body-bench prints "128KB ... scan+rewrite: N ns M MB/s": judge the last MB/s of that line.
        awk -v target="$BODY_TARGET_GBS" '$1 == "128KB" { for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") v = $i }
            END { if (v != "") printf "   128 KB request: %.2f GB/s (scan + rewrite) — target >= %.1f GB/s: %s\n",
                v / 1000, target, (v / 1000 >= target ? "PASS" : "FAIL") }' "$BODY_OUT"
        [[ -z $BODY_NOTE ]] || echo "   NOTE: $BODY_NOTE"
    else
        echo "3. Request-body handling: ${BODY_NOTE:-not run}"
    fi
    echo
    if ((RELAY_DONE)) && [[ -s $RELAY_CSV ]]; then
        rcol() { awk -F, -v t="$1" -v k="$2" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
            $1 > 0 && $2 == t { print $c[k] }' "$RELAY_CSV"; }
        echo "4. Stream relay CPU: $RELAY_STREAMS streams x $RELAY_TOKENS tokens at $RELAY_TPS tokens/s (one SSE event per token)," \
            "through each proxy to the same lexora-sim, $ROUNDS rounds interleaved, medians"
        printf '   %-7s %12s %14s %12s\n' target "CPU ms/run" "us per event" "completed"
        for t in nginx lexora; do
            printf '   %-7s %12s %14s %12s\n' "$t" "$(rcol "$t" cpu_ms | median)" "$(rcol "$t" us_per_event | median)" \
                "$(rcol "$t" completed | median)/$RELAY_STREAMS"
        done
        nc=$(rcol nginx cpu_ms | median)
        lc=$(rcol lexora cpu_ms | median)
        if [[ -n $nc && -n $lc ]]; then
            awk -v n="$nc" -v l="$lc" 'BEGIN { x = (n > 0 ? l / n : 0)
                printf "   lexora/nginx CPU: %.2fx (target <= 1.00: %s)\n", x, (x <= 1 ? "PASS" : "FAIL") }'
        fi
        echo "   CPU: user+system time of the proxy process (nginx: its one worker; lexora: the process) during each run."
        [[ -z $RELAY_NOTE ]] || echo "   NOTE: $RELAY_NOTE"
    else
        echo "4. Stream relay CPU: ${RELAY_NOTE:-not run}"
    fi
    echo
    if [[ -s $ROUTE_OUT ]]; then
        echo "5. Routing (route-bench: goal <= 1 us per decision; multiturn: TTFT with and without prefix affinity)"
        sed 's/^/   /' "$ROUTE_OUT"
        [[ -z $ROUTE_NOTE ]] || echo "   NOTE: $ROUTE_NOTE"
    else
        echo "5. Routing: ${ROUTE_NOTE:-not run}"
    fi
    echo
    if [[ -z $LEDGER_NOTE && -s $LEDGER_OUT ]]; then
        grep -v '^\[ledger ' "$LEDGER_OUT"
    else
        echo "6. Usage ledger in PostgreSQL: ${LEDGER_NOTE:-not run}"
    fi
    echo
    if [[ -s $ICOUNT_CSV ]] && (($(wc -l <"$ICOUNT_CSV") > 1)); then
        echo "7. User-space instructions per request (valgrind --tool=callgrind, every thread of the proxy; wrk -t1 -c8," \
            "${ICOUNT_SECS} s): not moved by other work on the machine; the kernel's share is not in them"
        awk -F, 'NR > 1 { n[$1] = $3 / $2; printf "   %-7s %8.0f instructions per request (%s requests)\n", $1, $3 / $2, $2 }
            END { if (n["nginx"] > 0 && n["lexora"] > 0) printf "   lexora/nginx: %.2fx\n", n["lexora"] / n["nginx"] }' "$ICOUNT_CSV"
        echo "   per function (inclusive): $RESULTS/icount-*-inclusive.txt"
        [[ -z $ICOUNT_NOTE ]] || echo "   NOTE: $ICOUNT_NOTE"
    else
        echo "7. Instructions per request: ${ICOUNT_NOTE:-not run}"
    fi
    echo
    echo "Raw results: $RESULTS"
} | tee "$SUMMARY"
cp "$SUMMARY" "$RESULTS/summary.txt"
say "summary saved as $SUMMARY"
# A part that could not run is a failure of the run (the targets missed are not: they are results).
if ((WRK_FAILURES)) || [[ -n $LEXORA_HTTP_NOTE || -n $SSE_NOTE || -n $BODY_NOTE || -n $RELAY_NOTE || -n $ROUTE_NOTE ||
    -n $LEDGER_NOTE ]]; then
    say "some measurements could not be made (${WRK_FAILURES} wrk runs failed; notes above)"
    exit 1
fi
