#!/usr/bin/env bash
# The KV-over-TCP figures of docs/PERFORMANCE.md ("KV over TCP: compression and network
# namespaces"): clusters brought up at once with `pdctl up -d`, alternating rounds of
# `pdctl bench` against each (the machine is shared and its load drifts), pooled by
# deploy/bench/merge-bench.py. Results in $OUT, summary in $OUT/summary.txt.
#
#   deploy/bench/kv-wire-bench.sh                     # both parts
#   ONLY=codec deploy/bench/kv-wire-bench.sh
#   ONLY=netns BASE_BIN_DIR=/path/to/other/build/bin deploy/bench/kv-wire-bench.sh
#
# Parts:
#   codec  1P1D over UCX tcp on loopback, transfer.kv_codec none / int8 / fp8: TTFT and
#          transfer share of a cold 2K prompt
#   netns  2P2D with every role in its own network namespace (deploy/netns.yaml, UCX tcp
#          over veth pairs and a bridge; needs root): transfer share of TTFT for a cold 2K
#          prompt, this build against the binaries in BASE_BIN_DIR (another commit)
# Environment: PD_BIN_DIR (default build/bin), OUT, PRESET (small), MODEL_DIR, ROUNDS (4),
# N (requests per round, 6), BASE_BIN_DIR (netns: the comparison build; without it the
# part runs this build alone).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PD_BIN_DIR:-$ROOT/build/bin}
PRESET=${PRESET:-small}
MODEL_DIR=${MODEL_DIR:-$ROOT/.pdkv/models/$PRESET}
OUT=${OUT:-$ROOT/.pdkv/bench/kv-wire-$(date -u +%Y%m%d-%H%M%S)}
ONLY=${ONLY:-codec netns}
ROUNDS=${ROUNDS:-4}
N=${N:-6}
BASE_BIN_DIR=${BASE_BIN_DIR:-}
export PD_RUN_DIR=$OUT/run
MERGE=$ROOT/deploy/bench/merge-bench.py
mkdir -p "$OUT" "$PD_RUN_DIR"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
log() { echo "== $*" | tee -a "$SUMMARY" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

if [[ ! -d $MODEL_DIR ]]; then
    "$BIN/pdctl" model new --preset "$PRESET" --seed 1 -o "$MODEL_DIR" >&2
fi

UP=() # "bin manifest port name" of each cluster up, brought down on exit

# shellcheck source=deploy/bench/ports.sh
source "$ROOT/deploy/bench/ports.sh"

# up BIN MANIFEST PORT NAME [--set K=V]...: start cluster NAME with the roles of BIN.
up() {
    local bin=$1 manifest=$2 port=$3 name=$4
    shift 4
    log "up $bin/pdctl $manifest name $name port $port $*"
    UP+=("$bin $manifest $port $name")
    PD_BIN_DIR=$bin "$bin/pdctl" up -d "$manifest" --set network.base_port="$port" \
        --set name="$name" --set model.path="$MODEL_DIR" --set model.preset="$PRESET" "$@" >&2
}

cleanup() {
    local c bin manifest port name
    for c in "${UP[@]+"${UP[@]}"}"; do
        read -r bin manifest port name <<<"$c"
        log "down $name port $port"
        PD_BIN_DIR=$bin "$bin/pdctl" down "$manifest" --set network.base_port="$port" \
            --set name="$name" >&2 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bench NAME ENDPOINT ARGS...: one pdctl bench run (this build's client).
bench() {
    local name=$1 ep=$2
    shift 2
    log "bench $name: pdctl bench -r $ep $*"
    "$BIN/pdctl" bench -q -r "$ep" --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" || true
    cat "$OUT/$name.txt" >>"$SUMMARY"
}

merge() {
    local name=$1
    shift
    log "merge $name"
    python3 "$MERGE" "$name" "$@" | tee -a "$SUMMARY" >&2 || true
}

COLD_2K=(-N "$N" -c 1 --prompt-len 2000 --max-tokens 16 --cache off)
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

if want codec; then
    declare -A EP FILES
    p=17200
    for c in none int8 fp8; do
        p=$(pick_port "$p")
        up "$BIN" "$ROOT/deploy/local.yaml" "$p" "codec-$c" --set transfer.transports=tcp \
            --set transfer.kv_codec=$c
        EP[$c]="127.0.0.1:$p"
        FILES[$c]=""
        p=$((p + 50))
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in none int8 fp8; do
            bench "codec-$c-r$r" "${EP[$c]}" "${COLD_2K[@]}" --seed $((100 + r))
            FILES[$c]+=" $OUT/codec-$c-r$r.json"
        done
        log "load average after round $r: $(cut -d' ' -f1-3 /proc/loadavg)"
    done
    for c in none int8 fp8; do
        # shellcheck disable=SC2086
        merge "tcp-2k-kv_codec-$c" ${FILES[$c]}
    done
fi

if want netns; then
    if [[ $(id -u) != 0 ]]; then
        log "netns: skipped (needs root)"
    else
        sides=(this)
        [[ -n $BASE_BIN_DIR ]] && sides+=(base)
        declare -A NEP NFILES
        p=27200
        sub=78
        for s in "${sides[@]}"; do
            bin=$BIN
            [[ $s == base ]] && bin=$BASE_BIN_DIR
            p=$(pick_port "$p")
            up "$bin" "$ROOT/deploy/netns.yaml" "$p" "netns-$s" --set network.subnet=10.$sub.0 \
                --set prefill.count=2 --set decode.count=2
            NEP[$s]="10.$sub.0.2:$p"
            NFILES[$s]=""
            p=$((p + 50))
            sub=$((sub + 1))
        done
        for ((r = 1; r <= ROUNDS; r++)); do
            for s in "${sides[@]}"; do
                bench "netns-2p2d-$s-r$r" "${NEP[$s]}" "${COLD_2K[@]}" --seed $((200 + r))
                NFILES[$s]+=" $OUT/netns-2p2d-$s-r$r.json"
            done
            log "load average after round $r: $(cut -d' ' -f1-3 /proc/loadavg)"
        done
        for s in "${sides[@]}"; do
            # shellcheck disable=SC2086
            merge "netns-2p2d-2k-$s" ${NFILES[$s]}
        done
    fi
fi
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
