#!/usr/bin/env bash
# Reproduce the cluster and caching figures of docs/PERFORMANCE.md ("Cluster: TTFT
# breakdown and disaggregation", "Prefix caching and KV-aware routing").
#
# Every experiment brings its cluster up with `pdctl up -d` on a free loopback port, runs
# `pdctl bench` against it, and brings it down again (also on error or Ctrl-C). Results go
# to $OUT (one .txt table and one .json per run) and a summary to $OUT/summary.txt.
#
#   deploy/bench/run-cluster-bench.sh               # everything (about 10 minutes)
#   ONLY="breakdown cache" deploy/bench/run-cluster-bench.sh
#
# Environment:
#   PD_BIN_DIR   where pdctl and the pd-* binaries are (default: build/bin)
#   OUT          result directory (default: .pdkv/bench/<date>)
#   PRESET       model preset (default small; m50 is 3x slower per token on 2 cores)
#   MODEL_DIR    model directory, made from PRESET if missing (default .pdkv/models/PRESET)
#   TRACE        Mooncake trace (default $PD_SOURCE_DIR/../shared/data/
#                mooncake_synthetic_trace.jsonl, never copied into the repository)
#   ONLY         subset of: breakdown flood cache routing fetch trace
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PD_BIN_DIR:-$ROOT/build/bin}
PDCTL=$BIN/pdctl
PRESET=${PRESET:-small}
MODEL_DIR=${MODEL_DIR:-$ROOT/.pdkv/models/$PRESET}
OUT=${OUT:-$ROOT/.pdkv/bench/$(date -u +%Y%m%d-%H%M%S)}
SRC=${PD_SOURCE_DIR:-$ROOT}
TRACE=${TRACE:-$SRC/../shared/data/mooncake_synthetic_trace.jsonl}
ONLY=${ONLY:-breakdown flood cache routing fetch trace}
export PD_RUN_DIR=$OUT/run
export PD_BIN_DIR=$BIN

mkdir -p "$OUT" "$PD_RUN_DIR"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

if [[ ! -x $PDCTL ]]; then
    echo "run-cluster-bench: $PDCTL not found (build first, or set PD_BIN_DIR)" >&2
    exit 1
fi

log() { echo "== $*" | tee -a "$SUMMARY" >&2; }

# Clusters that are up: "manifest port" pairs, brought down by cleanup.
UP=()
USED_PORTS=()

# shellcheck source=deploy/bench/ports.sh
source "$ROOT/deploy/bench/ports.sh"

# up MANIFEST [--set K=V]...: start a cluster, print its port.
up() {
    local manifest=$1
    shift
    local port
    port=$(pick_port 17200) || { echo "run-cluster-bench: no free port range" >&2; return 1; }
    log "up $manifest port $port $*"
    "$PDCTL" up -d "$manifest" --set network.base_port="$port" \
        --set model.path="$MODEL_DIR" --set model.preset="$PRESET" "$@" >&2
    UP+=("$manifest $port")
    USED_PORTS+=("$port")
    PORT=$port
}

down() {
    local manifest=$1 port=$2
    log "down $manifest port $port"
    "$PDCTL" down "$manifest" --set network.base_port="$port" >&2 || true
    local keep=() c
    for c in "${UP[@]}"; do
        [[ $c == "$manifest $port" ]] || keep+=("$c")
    done
    UP=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
    local c
    for c in "${UP[@]+"${UP[@]}"}"; do
        # shellcheck disable=SC2086
        down $c
    done
    local j
    for j in $(jobs -p); do
        kill "$j" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bench NAME PORT ARGS...: one pdctl bench run, table to NAME.txt, records to NAME.json.
bench() {
    local name=$1 port=$2
    shift 2
    log "bench $name: pdctl bench -r 127.0.0.1:$port $*"
    "$PDCTL" bench -q -r "127.0.0.1:$port" --json "$OUT/$name.json" "$@" \
        >"$OUT/$name.txt" || true
    cat "$OUT/$name.txt" >>"$SUMMARY"
    cat "$OUT/$name.txt" >&2
}

want() { [[ " $ONLY " == *" $1 "* ]]; }

M_LOCAL=$ROOT/deploy/local.yaml
M_2P2D=$ROOT/deploy/2p2d.yaml
M_COLO=$ROOT/deploy/colocated.yaml

# A 2,000-token prompt with 16 output tokens fits the presets' 2,048-token context.
PROMPT_2K=2000

# The machine is shared and its load drifts by the minute, so the A/B comparisons below
# keep both clusters up at once (idle workers cost nothing) and alternate short rounds
# between them; deploy/bench/merge-bench.py pools each side's rounds.
ROUNDS=${ROUNDS:-4}
MERGE=$ROOT/deploy/bench/merge-bench.py

merge() {
    local name=$1
    shift
    log "merge $name: deploy/bench/merge-bench.py $name $*"
    python3 "$MERGE" "$name" "$@" | tee -a "$SUMMARY" >&2 || true
}

# Issue 4: TTFT of a cold 2K prompt split into queue, prefill and transfer, with
# layer-wise pushing and without. One request at a time, cache off (every one is cold).
if want breakdown; then
    up "$M_LOCAL" --set transfer.layerwise=true
    p_on=$PORT
    up "$M_LOCAL" --set transfer.layerwise=false
    p_off=$PORT
    on=() off=()
    for ((r = 1; r <= ROUNDS; r++)); do
        bench "ttft2k-layerwise-true-r$r" "$p_on" -N 6 -c 1 --prompt-len $PROMPT_2K \
            --max-tokens 16 --cache off --seed $((10 + r))
        bench "ttft2k-layerwise-false-r$r" "$p_off" -N 6 -c 1 --prompt-len $PROMPT_2K \
            --max-tokens 16 --cache off --seed $((10 + r))
        on+=("$OUT/ttft2k-layerwise-true-r$r.json")
        off+=("$OUT/ttft2k-layerwise-false-r$r.json")
    done
    merge "ttft2k-layerwise-true" "${on[@]}"
    merge "ttft2k-layerwise-false" "${off[@]}"
    down "$M_LOCAL" "$p_off"
    down "$M_LOCAL" "$p_on"
fi

# Issue 4: TPOT of short-prompt, long-output requests while another client floods the
# prefill side with long prompts, disaggregated (1P1D) against colocated (one worker that
# prefills for itself). Each deployment: the victim alone, then the victim under flood.
# Both deployments get the same generous worker and transfer timeouts: a worker computing
# a long prompt on a starved 2-core machine can miss the default 3 s heartbeat window.
# The victim cancels a request that has no done 30 s after its send.
VICTIM=(-N 16 --rate 1 --prompt-len 64 --max-tokens 256 --seed 21 --timeout-ms 30000)
FLOOD=(-N 1000 -c 1 --prompt-len 1900 --max-tokens 1 --cache off --seed 22)
FLOOD_SETS=(--set router.worker_timeout_ms=30000 --set transfer.timeout_ms=30000)
if want flood; then
    for dep in disagg colocated; do
        if [[ $dep == disagg ]]; then m=$M_LOCAL; else m=$M_COLO; fi
        up "$m" "${FLOOD_SETS[@]}"
        port=$PORT
        bench "tpot-$dep-alone" "$port" "${VICTIM[@]}"
        # The flood runs until the victim is done, then is interrupted (SIGINT cancels
        # what it has in flight).
        log "flood $dep: pdctl bench -r 127.0.0.1:$port ${FLOOD[*]}"
        "$PDCTL" bench -q -r "127.0.0.1:$port" --json "$OUT/flood-$dep.json" "${FLOOD[@]}" \
            >"$OUT/flood-$dep.txt" 2>&1 &
        flood_pid=$!
        sleep 3
        bench "tpot-$dep-flooded" "$port" "${VICTIM[@]}"
        kill -INT "$flood_pid" 2>/dev/null || true
        wait "$flood_pid" || true
        cat "$OUT/flood-$dep.txt" >>"$SUMMARY"
        down "$m" "$PORT"
    done
fi

# Issue 5: a 2K prompt whose first 1,920 tokens are cached against the same length cold.
# 8 prefix groups drawn at random: the first request of each group is cold (and writes the
# prefix), the later ones hit it. The table splits TTFT by cold / cache hit.
if want cache; then
    up "$M_LOCAL"
    bench "prefix1920-of-2k" "$PORT" -N 32 -c 1 --prompt-len $PROMPT_2K --max-tokens 16 \
        --shared-prefix 1920 --prefix-groups 8 --seed 31
    down "$M_LOCAL" "$PORT"
fi

# Issue 5: KV-aware routing (policy kv) against round-robin (rr) on 2P2D with a shared-
# prefix workload: 8 prefixes of 1,024 tokens, prompts of 1,100..1,300 tokens, Poisson
# arrivals at 2/s. Each round uses a new seed (new prefixes), so every round starts cold
# on both clusters.
if want routing; then
    up "$M_2P2D" --set router.policy=kv
    p_kv=$PORT
    up "$M_2P2D" --set router.policy=rr
    p_rr=$PORT
    kv=() rr=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for pol in kv rr; do
            if [[ $pol == kv ]]; then port=$p_kv; else port=$p_rr; fi
            bench "routing-$pol-r$r" "$port" -N 32 --rate 2 --prompt-len 1100:1300 \
                --max-tokens 16 --shared-prefix 1024 --prefix-groups 8 --seed $((40 + r))
        done
        kv+=("$OUT/routing-kv-r$r.json")
        rr+=("$OUT/routing-rr-r$r.json")
    done
    merge "routing-kv" "${kv[@]}"
    merge "routing-rr" "${rr[@]}"
    down "$M_2P2D" "$p_rr"
    down "$M_2P2D" "$p_kv"
fi

# Issue 5: prefill reading a prefix from the decode worker's pool (transfer.fetch) against
# recomputing it. 2 prefill workers, 1 decode, round-robin: the decode worker holds every
# group's prefix after its first request, the prefill worker of the moment often does not.
if want fetch; then
    up "$M_2P2D" --set decode.count=1 --set router.policy=rr --set transfer.fetch=true
    p_on=$PORT
    up "$M_2P2D" --set decode.count=1 --set router.policy=rr --set transfer.fetch=false
    p_off=$PORT
    on=() off=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for f in on off; do
            if [[ $f == on ]]; then port=$p_on; else port=$p_off; fi
            bench "fetch-$f-r$r" "$port" -N 32 --rate 2 --prompt-len 1100:1300 \
                --max-tokens 16 --shared-prefix 1024 --prefix-groups 8 --seed $((60 + r))
        done
        on+=("$OUT/fetch-on-r$r.json")
        off+=("$OUT/fetch-off-r$r.json")
    done
    merge "fetch-on" "${on[@]}"
    merge "fetch-off" "${off[@]}"
    down "$M_2P2D" "$p_off"
    down "$M_2P2D" "$p_on"
fi

# Issue 5: the synthetic Mooncake trace, first 800 requests, lengths / 32 (16 tokens per
# hash id = the router's block size), clipped to the context, time x 0.5, against the
# ideal infinite cache on the same scaled trace. min_cached_prefix 16 so that every full
# block may be cached (the scaled prompts are mostly under the default 1,024).
TRACE_ARGS=(--trace "$TRACE" --trace-limit 800 --trace-len-scale 32 --trace-time-scale 0.5
    --trace-max-len 2048 -c 8)
if want trace; then
    if [[ -r $TRACE ]]; then
        up "$M_LOCAL" --set router.min_cached_prefix=16
        bench "trace-800" "$PORT" "${TRACE_ARGS[@]}" --plot "$OUT/trace-800.png"
        down "$M_LOCAL" "$PORT"
        # The same with a 1 GiB host-memory tier (G2) behind each worker's 256 MiB pool.
        up "$M_LOCAL" --set router.min_cached_prefix=16 --set tiers.host_mb=1024
        bench "trace-800-host1g" "$PORT" "${TRACE_ARGS[@]}"
        down "$M_LOCAL" "$PORT"
        # Comparison points: the same scaled trace under LRU caches of the pool's size
        # (4096 blocks: 256 MiB of the small model's 64 KiB blocks) and larger.
        log "trace LRU: deploy/bench/trace-lru.py $TRACE --limit 800 --len-scale 32 --max-len 2048 --blocks 0 4096 8192 20480"
        python3 "$ROOT/deploy/bench/trace-lru.py" "$TRACE" --limit 800 --len-scale 32 \
            --max-len 2048 --blocks 0 4096 8192 20480 | tee -a "$SUMMARY" >&2 || true
    else
        log "trace: $TRACE not readable, skipped"
    fi
fi

for p in "${USED_PORTS[@]+"${USED_PORTS[@]}"}"; do
    if pgrep -f "tcp://127.0.0.1:$p " >/dev/null 2>&1; then
        log "warning: processes on port $p still running"
    fi
done
log "results in $OUT"
