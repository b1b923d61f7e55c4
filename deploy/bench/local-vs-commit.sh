#!/usr/bin/env bash
# Throughput of deploy/local.yaml against another commit's build, same run: two clusters
# up at once (this build on base port 23100, BASE_BIN_DIR's on 23300, each making its own
# model from the manifest's preset in its own directory), then ROUNDS alternating rounds
# of this build's `pdctl bench` against each. The machine is shared and its load drifts:
# compare medians over the rounds.
#
#   BASE_BIN_DIR=/path/to/other/build/bin BASE_MANIFEST=/path/to/other/deploy/local.yaml \
#     deploy/bench/local-vs-commit.sh
#
# Environment: PD_BIN_DIR (default build/bin), OUT (default a temporary directory),
# ROUNDS (5), ARGS (the bench options, default -N 32 -c 8 --prompt-len 256
# --max-tokens 64 --seed 1 -q).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
new_bin=$(cd "${PD_BIN_DIR:-$here/build/bin}" && pwd)
base_bin=${BASE_BIN_DIR:?set BASE_BIN_DIR to the bin directory of the other build}
base_manifest=${BASE_MANIFEST:-$here/deploy/local.yaml}
out=${OUT:-$(mktemp -d /tmp/pdkv-local-vs-XXXXXX)}
rounds=${ROUNDS:-5}
args=${ARGS:--N 32 -c 8 --prompt-len 256 --max-tokens 64 --seed 1 -q}
mkdir -p "$out/new" "$out/base"
export PD_RUN_DIR=$out/run
down() {
    (cd "$out/new" && "$new_bin/pdctl" down "$here/deploy/local.yaml" --set network.base_port=23100)
    (cd "$out/base" && "$base_bin/pdctl" down "$base_manifest" --set network.base_port=23300)
}
trap down EXIT
(cd "$out/new" && "$new_bin/pdctl" up -d "$here/deploy/local.yaml" --set network.base_port=23100) || exit 1
(cd "$out/base" && "$base_bin/pdctl" up -d "$base_manifest" --set network.base_port=23300) || exit 1
for r in $(seq 1 "$rounds"); do
    for side in new base; do
        port=23100
        [ "$side" = base ] && port=23300
        echo "== round $r $side (load $(cut -d' ' -f1-3 /proc/loadavg))"
        # shellcheck disable=SC2086
        "$new_bin/pdctl" bench -r "tcp://127.0.0.1:$port" $args 2>&1
    done
done | tee "$out/rounds.txt"
echo "pdctl bench output of every round: $out/rounds.txt"
