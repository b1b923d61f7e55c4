#!/usr/bin/env bash
# The quick start's main job: bring up deploy/local.yaml (1 prefill + 1 decode worker,
# the default model), submit one prompt, stream the answer with its timings, check that
# the cluster's tokens equal a single process's (`pdctl generate`), tear the cluster down.
#   deploy/demo.sh [BUILD_DIR] ["PROMPT"] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
prompt=${2:-Once upon a time}
n=${3:-48}
pdctl=$build/bin/pdctl
manifest=deploy/local.yaml
port=${PD_DEMO_PORT:-7100}
router=tcp://127.0.0.1:$port
seed=1

[ -x "$pdctl" ] || { echo "demo: $pdctl not built (run 'make build')" >&2; exit 1; }
export PD_RUN_DIR=${PD_RUN_DIR:-.pdkv/run}

cleanup() { "$pdctl" down "$manifest" --set network.base_port="$port" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

echo "== pdctl up -d $manifest   (router $router)"
"$pdctl" up -d "$manifest" --set network.base_port="$port"
"$pdctl" status -r "$router"

echo
echo "== pdctl submit -p \"$prompt\" -n $n --seed $seed --temperature 0.8"
echo "   (the default model has random weights: its text is noise; the point is the path)"
"$pdctl" submit -r "$router" -p "$prompt" -n "$n" --seed "$seed" --temperature 0.8
echo

# Exactness: the cluster and one process agree token for token.
cluster=$("$pdctl" submit -r "$router" -p "$prompt" -n "$n" --seed "$seed" --temperature 0.8 \
          --json | grep -o '"tokens":\[[0-9,]*\]')
single=$("$pdctl" generate -m .pdkv/models/small -p "$prompt" -n "$n" --seed "$seed" \
         --temperature 0.8 --json | grep -o '"tokens":\[[0-9,]*\]' | tail -n 1)
if [ "$cluster" = "$single" ]; then
    echo "== exact: the cluster's $n tokens equal 'pdctl generate' (one process, no transfer)"
else
    echo "== MISMATCH: cluster $cluster vs pdctl generate $single" >&2
    exit 1
fi
echo "== pdctl down $manifest"
