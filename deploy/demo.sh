#!/usr/bin/env bash
# The quick start's main job: bring up deploy/local.yaml (1 prefill + 1 decode worker,
# the default model) with one HTTP gateway in front, submit one prompt, stream the answer
# with its timings, check that the cluster's tokens equal a single process's
# (`pdctl generate`), ask the same through the OpenAI API with curl, tear the cluster down.
#   deploy/demo.sh [BUILD_DIR] ["PROMPT"] [MAX_TOKENS]
# PD_DEMO_PORT (default 7100) and PD_DEMO_HTTP_PORT (default 8000) move the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
prompt=${2:-Once upon a time}
n=${3:-48}
pdctl=$build/bin/pdctl
manifest=deploy/local.yaml
port=${PD_DEMO_PORT:-7100}
http_port=${PD_DEMO_HTTP_PORT:-8000}
router=tcp://127.0.0.1:$port
http=http://127.0.0.1:$http_port
seed=1

[ -x "$pdctl" ] || { echo "demo: $pdctl not built (run 'make build')" >&2; exit 1; }
export PD_RUN_DIR=${PD_RUN_DIR:-.pdkv/run}

cleanup() { "$pdctl" down "$manifest" --set network.base_port="$port" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

echo "== pdctl up -d $manifest --set gateway.count=1   (router $router, HTTP $http)"
"$pdctl" up -d "$manifest" --set network.base_port="$port" --set gateway.count=1 \
    --set gateway.port="$http_port"
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

# The same request through the HTTP front door, as any OpenAI client would send it.
echo
echo "== curl $http/v1/completions   (the OpenAI API; docs/API.md)"
esc=$(printf '%s' "$prompt" | sed 's/\\/\\\\/g; s/"/\\"/g')
body="{\"model\": \"pdkv\", \"prompt\": \"$esc\", \"max_tokens\": $n, \"seed\": $seed,"
body="$body \"temperature\": 0.8, \"return_token_ids\": true}"
echo "   $body"
for _ in $(seq 300); do # the gateway is up once it sees the router and its workers
    curl -fsS "$http/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
reply=$(curl -sS --max-time 60 "$http/v1/completions" -H 'Content-Type: application/json' \
        -d "$body")
echo "$reply" | head -c 600
echo
via_http=$(echo "$reply" | grep -o '"token_ids": *\[[0-9, ]*\]' | head -n 1 | tr -d ' ' |
           sed 's/token_ids/tokens/')
if [ "$via_http" = "$single" ]; then
    echo "== exact: the HTTP API's $n tokens equal 'pdctl generate' too"
else
    echo "== MISMATCH: HTTP $via_http vs pdctl generate $single" >&2
    exit 1
fi
echo "== pdctl down $manifest"
