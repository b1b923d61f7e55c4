#!/usr/bin/env bash
# Reproduce the scheduling figures of docs/PERFORMANCE.md ("Scheduling: where TTFT goes,
# late binding and goodput"): the same experiments against two builds, A (a base build)
# and B (this one), alternating A and B round by round on the same cores.
#
#   BASE_BIN=/path/to/base/build/bin deploy/bench/sched-bench.sh
#   ONLY="trace" ROUNDS=3 BASE_BIN=... deploy/bench/sched-bench.sh
#
# Experiments (ONLY, default all):
#   trace    the Mooncake-format trace replayed on deploy/2p2d.yaml, tiers.host_mb=1024,
#            policy kv: TTFT and its parts
#   flood    deploy/local.yaml: a short prompt (the victim) sent while a second client
#            keeps one 1,900-token prompt in flight
#   goodput  Poisson rate sweep (--rates) with TTFT/TPOT objectives, on 2p2d (both builds)
#            and on deploy/colocated.yaml (this build)
#
# Environment:
#   BASE_BIN   the base build's bin directory (required for A)
#   PD_BIN_DIR this build's bin directory (default build/bin)
#   ROUNDS     A/B rounds (default 2)
#   MODEL_DIR  model directory (default .pdkv/models/small, made by pdctl up if missing)
#   TRACE      the trace (default $PD_SOURCE_DIR/../shared/data/mooncake_synthetic_trace.jsonl)
#   SLO_TTFT_MS, SLO_TPOT_MS, RATES, GOODPUT_N  the goodput sweep's objectives, rates and
#              requests per rate
#   NEW_SETS   more manifest overrides for this build's clusters only, as one string
#              (e.g. "--set prefill.chunk_tokens=64")
#   OUT        result directory (default .pdkv/bench/sched-<date>)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NEW_BIN=${PD_BIN_DIR:-$ROOT/build/bin}
BASE_BIN=${BASE_BIN:?set BASE_BIN to the base build\'s bin directory}
PDCTL=$NEW_BIN/pdctl # the client of both runs (it reads what each router reports)
SRC=${PD_SOURCE_DIR:-$ROOT}
TRACE=${TRACE:-$SRC/../shared/data/mooncake_synthetic_trace.jsonl}
MODEL_DIR=${MODEL_DIR:-$ROOT/.pdkv/models/small}
ROUNDS=${ROUNDS:-2}
ONLY=${ONLY:-trace flood goodput}
SLO_TTFT_MS=${SLO_TTFT_MS:-1000}
SLO_TPOT_MS=${SLO_TPOT_MS:-50}
RATES=${RATES:-0.5,1,2}
GOODPUT_N=${GOODPUT_N:-24}
GOODPUT_LOAD=(--prompt-len 128:512 --max-tokens 16:32 --seed 31)
OUT=${OUT:-$ROOT/.pdkv/bench/sched-$(date -u +%Y%m%d-%H%M%S)}
export PD_RUN_DIR=$OUT/run
mkdir -p "$OUT" "$PD_RUN_DIR"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

log() { echo "== $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg): $*" | tee -a "$SUMMARY" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

UP=()
cleanup() {
    local e
    for e in "${UP[@]}"; do
        # shellcheck disable=SC2086
        PD_BIN_DIR=${e%% *} "${e%% *}/pdctl" down ${e#* } >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT INT TERM

# shellcheck source=deploy/bench/ports.sh
source "$ROOT/deploy/bench/ports.sh"

# up BIN MANIFEST [--set K=V]...: a cluster of that build; sets PORT.
up() {
    local bin=$1 manifest=$2
    shift 2
    local extra=()
    # shellcheck disable=SC2206
    [[ $bin == "$NEW_BIN" ]] && extra=(${NEW_SETS:-})
    PORT=$(pick_port 18200)
    PD_BIN_DIR=$bin "$bin/pdctl" up -d "$manifest" --set network.base_port="$PORT" \
        --set model.path="$MODEL_DIR" "$@" "${extra[@]}" >>"$OUT/up.log" 2>&1
    UP+=("$bin $manifest --set network.base_port=$PORT")
}

down() {
    local bin=$1 manifest=$2
    PD_BIN_DIR=$bin "$bin/pdctl" down "$manifest" --set network.base_port="$PORT" \
        >>"$OUT/up.log" 2>&1 || true
    unset 'UP[${#UP[@]}-1]'
}

# bench NAME ARGS...: one pdctl bench run against PORT.
bench() {
    local name=$1
    shift
    log "bench $name: pdctl bench -r 127.0.0.1:$PORT $*"
    "$PDCTL" bench -q -r "127.0.0.1:$PORT" --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1 ||
        log "bench $name failed (rc $?)"
    cat "$OUT/$name.txt" >>"$SUMMARY"
}

# The order of A and B alternates by round, so that neither always runs first.
sides() { if (($1 % 2 == 1)); then echo "base new"; else echo "new base"; fi; }
bin_of() { if [[ $1 == base ]]; then echo "$BASE_BIN"; else echo "$NEW_BIN"; fi; }

M_2P2D=$ROOT/deploy/2p2d.yaml
M_LOCAL=$ROOT/deploy/local.yaml
M_COLO=$ROOT/deploy/colocated.yaml
TRACE_ARGS=(--trace "$TRACE" --trace-limit 240 --trace-len-scale 8 --trace-time-scale 2
    --trace-max-len 2048)
SETS=(--set tiers.host_mb=1024 --set router.policy=kv --set router.worker_timeout_ms=30000
    --set transfer.timeout_ms=30000)

for ((r = 1; r <= ROUNDS; r++)); do
    for side in $(sides "$r"); do
        bin=$(bin_of "$side")
        if want trace; then
            up "$bin" "$M_2P2D" "${SETS[@]}"
            bench "trace-$side-r$r" "${TRACE_ARGS[@]}" --timeout-ms 120000
            down "$bin" "$M_2P2D"
        fi
        if want flood; then
            # The victim: 8 short prompts, one a second, while the flood keeps one long
            # prompt in flight; the flood is interrupted when the victim is done.
            up "$bin" "$M_LOCAL" "${SETS[@]}"
            bench "victim-alone-$side-r$r" -N 4 --rate 1 --prompt-len 64 --max-tokens 8 \
                --seed 21 --timeout-ms 30000
            "$PDCTL" bench -q -r "127.0.0.1:$PORT" --json "$OUT/flood-$side-r$r.json" \
                -N 1000 -c 1 --prompt-len 1900 --max-tokens 1 --cache off --seed 22 \
                >"$OUT/flood-$side-r$r.txt" 2>&1 &
            flood_pid=$!
            sleep 3
            bench "victim-flooded-$side-r$r" -N 8 --rate 1 --prompt-len 64 --max-tokens 8 \
                --seed 23 --timeout-ms 30000
            kill -INT "$flood_pid" 2>/dev/null || true
            wait "$flood_pid" || true
            down "$bin" "$M_LOCAL"
        fi
        if want goodput; then
            up "$bin" "$M_2P2D" "${SETS[@]}"
            bench "goodput-2p2d-$side-r$r" -N "$GOODPUT_N" --rates "$RATES" "${GOODPUT_LOAD[@]}" \
                --slo-ttft-ms "$SLO_TTFT_MS" \
                --slo-tpot-ms "$SLO_TPOT_MS" --timeout-ms 60000 --plot "$OUT/goodput-2p2d-$side-r$r.png"
            down "$bin" "$M_2P2D"
        fi
    done
    if want goodput; then
        up "$NEW_BIN" "$M_COLO" "${SETS[@]}" --set both.count=2
        bench "goodput-colocated-new-r$r" -N "$GOODPUT_N" --rates "$RATES" "${GOODPUT_LOAD[@]}" \
            --slo-ttft-ms "$SLO_TTFT_MS" \
            --slo-tpot-ms "$SLO_TPOT_MS" --timeout-ms 60000 --plot "$OUT/goodput-colocated-new-r$r.png"
        down "$NEW_BIN" "$M_COLO"
    fi
done
log "done: $OUT"
