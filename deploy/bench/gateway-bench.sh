#!/usr/bin/env bash
# Reproduce the HTTP gateway figures of docs/PERFORMANCE.md ("HTTP gateway: added latency
# and throughput").
#
# One cluster (deploy/local.yaml on a free loopback port, the tiny preset by default) with
# one pd-gateway in front of it. Every round runs the same workload twice, once through
# the router's socket (`pdctl bench -r`) and once through the gateway's OpenAI API
# (`pdctl bench --http`), alternating which goes first, so both see the same machine:
#
#   latency     open-loop Poisson arrivals at RATE/s, streamed; TTFT and TPOT per path.
#               Each run has its own seed, so no run's prompts are cached by another.
#   throughput  THR_N requests with THR_C in flight and no pacing; requests/s per path,
#               and the CPU share the gateway, the router and the workers used meanwhile
#               (from /proc): the process near 100% of a core is the limit.
#
#   deploy/bench/gateway-bench.sh                  # about 3 minutes
#   ROUNDS=7 RATE=50 deploy/bench/gateway-bench.sh
#
# Environment:
#   PD_BIN_DIR  where pdctl, pd-gateway and the roles are (default: build/bin)
#   OUT         result directory (default: .pdkv/bench/gateway-<date>)
#   PRESET      model preset (default tiny); MODEL_DIR (default .pdkv/models/PRESET)
#   ROUNDS      A/B rounds (default 5)
#   N, RATE     latency runs: requests and arrivals per second (defaults 200, 20)
#   PROMPT_LEN, OUTPUT_LEN   tokens per request (defaults 64, 8)
#   THR_N, THR_C             throughput runs: requests and concurrency (defaults 5000, 32)
# Results: $OUT/summary.txt (the table) and one JSON report per run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PD_BIN_DIR:-$ROOT/build/bin}
PDCTL=$BIN/pdctl
PRESET=${PRESET:-tiny}
MODEL_DIR=${MODEL_DIR:-$ROOT/.pdkv/models/$PRESET}
OUT=${OUT:-$ROOT/.pdkv/bench/gateway-$(date -u +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-5}
N=${N:-200}
RATE=${RATE:-20}
PROMPT_LEN=${PROMPT_LEN:-64}
OUTPUT_LEN=${OUTPUT_LEN:-8}
THR_N=${THR_N:-5000}
THR_C=${THR_C:-32}
export PD_RUN_DIR=$OUT/run
export PD_BIN_DIR=$BIN

for b in pdctl pd-gateway pd-router pd-prefill pd-decode; do
    if [[ ! -x $BIN/$b ]]; then
        echo "gateway-bench: $BIN/$b not found (build first, or set PD_BIN_DIR)" >&2
        exit 1
    fi
done
mkdir -p "$OUT" "$PD_RUN_DIR"

# shellcheck source=deploy/bench/ports.sh
source "$ROOT/deploy/bench/ports.sh"
PORT=$(pick_port 17300) || { echo "gateway-bench: no free port range" >&2; exit 1; }

GW_PID=
cleanup() {
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    "$PDCTL" down "$ROOT/deploy/local.yaml" --set network.base_port="$PORT" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

[[ -f $MODEL_DIR/model.safetensors ]] ||
    "$PDCTL" model new --preset "$PRESET" --seed 1 -o "$MODEL_DIR" >&2
echo "== up deploy/local.yaml on port $PORT, preset $PRESET" >&2
"$PDCTL" up -d "$ROOT/deploy/local.yaml" --set network.base_port="$PORT" \
    --set model.path="$MODEL_DIR" --set model.preset="$PRESET" >&2
ROUTER=tcp://127.0.0.1:$PORT

rm -f "$OUT/gw.ready"
"$BIN/pd-gateway" --listen 127.0.0.1:0 --ready-file "$OUT/gw.ready" --router "$ROUTER" \
    --tokenizer "$MODEL_DIR/tokenizer.bin" 2>"$OUT/gateway.log" &
GW_PID=$!
for ((i = 0; i < 600; i++)); do
    [[ -s $OUT/gw.ready ]] && break
    kill -0 "$GW_PID" 2>/dev/null || { echo "gateway-bench: pd-gateway exited, see $OUT/gateway.log" >&2; exit 1; }
    sleep 0.1
done
URL=$(sed -n 's/^http=//p' "$OUT/gw.ready")
[[ -n $URL ]] || { echo "gateway-bench: pd-gateway not ready after 60 s" >&2; exit 1; }
for ((i = 0; i < 600; i++)); do
    curl -fsS "$URL/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "== gateway $URL (pid $GW_PID), router $ROUTER" >&2

# The roles' pids, for their CPU time, from the state file pdctl up wrote.
STATE=$(ls "$PD_RUN_DIR"/local-*.state | head -1)
role_pid() { awk -v n="$1" '$1 == "proc" && $3 == n { print $2; exit }' "$STATE"; }
ROUTER_PID=$(role_pid router)
PREFILL_PID=$(role_pid prefill-0)
DECODE_PID=$(role_pid decode-0)
[[ -n $ROUTER_PID && -n $PREFILL_PID && -n $DECODE_PID ]] ||
    { echo "gateway-bench: no role pids in $STATE" >&2; exit 1; }
cpu_ticks() { # utime+stime of a pid, in clock ticks
    [[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
# The CPU time (user + system, ms) of this shell's finished children: the bench client.
# Sets CPU_MS; `times` must run in this shell, not in a command substitution.
child_cpu_ms() {
    times >"$OUT/.times"
    CPU_MS=$(awk 'NR == 2 {
        n = split($1 " " $2, t, " "); ms = 0
        for (i = 1; i <= n; i++) { split(t[i], a, "m"); ms += a[1] * 60000 + a[2] * 1000 }
        printf "%d\n", ms }' "$OUT/.times")
}
TCK=$(getconf CLK_TCK)
CPU_LOG=$OUT/cpu.txt
: >"$CPU_LOG"

# run KIND PATH ROUND ARGS...: one pdctl bench run, its JSON in $OUT/KIND-PATH-ROUND.json.
run() {
    local kind=$1 path=$2 round=$3
    shift 3
    local target=(-r "$ROUTER")
    [[ $path == http ]] && target=(--http "$URL")
    local before=() after=() p t0 t1
    for p in "$GW_PID" "$ROUTER_PID" "$PREFILL_PID" "$DECODE_PID"; do before+=("$(cpu_ticks "$p")"); done
    local c0 c1
    child_cpu_ms
    c0=$CPU_MS
    t0=$(date +%s.%N)
    "$PDCTL" bench "${target[@]}" -q --json "$OUT/$kind-$path-$round.json" "$@" \
        >"$OUT/$kind-$path-$round.txt"
    t1=$(date +%s.%N)
    child_cpu_ms
    c1=$CPU_MS
    for p in "$GW_PID" "$ROUTER_PID" "$PREFILL_PID" "$DECODE_PID"; do after+=("$(cpu_ticks "$p")"); done
    echo "$kind $path $round $t0 $t1 gateway $((after[0] - before[0])) router $((after[1] - before[1]))" \
        "prefill $((after[2] - before[2])) decode $((after[3] - before[3]))" \
        "client $(((c1 - c0) * TCK / 1000))" >>"$CPU_LOG"
    echo "   $kind $path round $round: $(grep -m1 throughput "$OUT/$kind-$path-$round.txt" | sed 's/^ *//')" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    order=(router http)
    ((r % 2 == 0)) && order=(http router)
    for path in "${order[@]}"; do
        off=0
        [[ $path == http ]] && off=500
        seed=$((1000 * r + off))
        run latency "$path" "$r" -N "$N" --rate "$RATE" --prompt-len "$PROMPT_LEN" \
            --max-tokens "$OUTPUT_LEN" --seed "$seed"
    done
    for path in "${order[@]}"; do
        off=100
        [[ $path == http ]] && off=600
        seed=$((1000 * r + off))
        run throughput "$path" "$r" -N "$THR_N" --rate 0 -c "$THR_C" --prompt-len 16 \
            --max-tokens 4 --seed "$seed"
    done
done

python3 "$ROOT/deploy/bench/gateway-summary.py" "$OUT" "$TCK" | tee "$OUT/summary.txt"
