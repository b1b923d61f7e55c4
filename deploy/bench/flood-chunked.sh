#!/usr/bin/env bash
# The flood case of docs/PERFORMANCE.md ("A short prompt behind a prefill flood: chunked
# prefill"): a victim client sends short prompts while a second client keeps the one
# prefill worker of deploy/local.yaml busy with long ones, one in flight at a time. Each
# configuration runs the victim alone, then under the flood; the configurations alternate
# over ROUNDS rounds on the same machine, so that each sees the same load.
#
#   deploy/bench/flood-chunked.sh                       # this build, chunks 256 and whole
#   BASE_BIN=/path/to/old/build/bin deploy/bench/flood-chunked.sh   # and a base build
#
# Environment:
#   PD_BIN_DIR  this build's binaries (default build/bin)
#   BASE_BIN    a base build's binaries (optional): run as configuration "base"
#   CHUNKS      chunk sizes to run this build with (default "256 32768"; 32768 is a
#               whole prompt per pass, the comparison point without chunking)
#   ROUNDS      rounds (default 2)
#   OUT         result directory (default .pdkv/bench/flood-<date>)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PD_BIN_DIR:-$ROOT/build/bin}
BASE_BIN=${BASE_BIN:-}
CHUNKS=${CHUNKS:-256 32768}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$ROOT/.pdkv/bench/flood-$(date -u +%Y%m%d-%H%M%S)}
MODEL_DIR=${MODEL_DIR:-$ROOT/.pdkv/models/small}
MANIFEST=$ROOT/deploy/local.yaml
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

# -n and --output-len: the names base builds know too.
VICTIM=(-n 16 --rate 2 --prompt-len 64 --output-len 16 --seed 21 --timeout-ms 30000)
FLOOD=(-n 1000 -c 1 --prompt-len 1900 --output-len 1 --cache off --seed 22)
SETS=(--set router.worker_timeout_ms=30000 --set transfer.timeout_ms=30000
    --set model.path="$MODEL_DIR" --set model.preset=small)

log() { echo "== $*" | tee -a "$SUMMARY" >&2; }

# shellcheck source=deploy/bench/ports.sh
source "$ROOT/deploy/bench/ports.sh"

UP=""
cleanup() {
    if [[ -n $UP ]]; then
        # shellcheck disable=SC2086
        PD_BIN_DIR=${UP%% *} "${UP%% *}/pdctl" down "$MANIFEST" --set network.base_port=${UP##* } \
            >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# run NAME BIN [--set K=V]...: the victim alone, then under the flood, on a fresh cluster.
run() {
    local name=$1 bin=$2
    shift 2
    local port
    port=$(pick_port 17200)
    export PD_RUN_DIR=$OUT/run-$name
    mkdir -p "$PD_RUN_DIR"
    log "$name: up port $port $*  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    PD_BIN_DIR=$bin "$bin/pdctl" up -d "$MANIFEST" --set network.base_port="$port" "${SETS[@]}" \
        "$@" >"$OUT/up-$name.log" 2>&1
    UP="$bin $port"
    "$bin/pdctl" bench -q -r "127.0.0.1:$port" --json "$OUT/$name-alone.json" "${VICTIM[@]}" \
        >"$OUT/$name-alone.txt" 2>&1
    log "$name alone"
    cat "$OUT/$name-alone.txt" >>"$SUMMARY"
    "$bin/pdctl" bench -q -r "127.0.0.1:$port" --json "$OUT/$name-flood.json" "${FLOOD[@]}" \
        >"$OUT/$name-flood.txt" 2>&1 &
    local flood_pid=$!
    sleep 3
    "$bin/pdctl" bench -q -r "127.0.0.1:$port" --json "$OUT/$name-flooded.json" "${VICTIM[@]}" \
        >"$OUT/$name-flooded.txt" 2>&1
    kill -INT "$flood_pid" 2>/dev/null || true
    wait "$flood_pid" || true
    log "$name flooded"
    cat "$OUT/$name-flooded.txt" >>"$SUMMARY"
    log "$name flood"
    cat "$OUT/$name-flood.txt" >>"$SUMMARY"
    PD_BIN_DIR=$bin "$bin/pdctl" down "$MANIFEST" --set network.base_port="$port" >/dev/null 2>&1 ||
        true
    UP=""
}

for ((r = 1; r <= ROUNDS; r++)); do
    if [[ -n $BASE_BIN ]]; then
        run "base-r$r" "$BASE_BIN"
    fi
    for c in $CHUNKS; do
        run "chunk$c-r$r" "$BIN" --set prefill.chunk_tokens="$c"
    done
done
log "done: $OUT"
