#!/usr/bin/env bash
# Writes docs/TRANSCRIPT.md: a new user's first ten minutes with pdkv, run for real
# against this build, so the page shows what the tools print today. It runs the demo,
# then by hand: a submit before any cluster is up, up, status, submit (twice, and once
# more with the printed seed), a short bench, a manifest with a typo, down (twice), and
# the logs.
#   deploy/transcript.sh [BUILD_DIR] [OUT]      (default: build, docs/TRANSCRIPT.md)
#   deploy/transcript.sh --check [BUILD_DIR]    (the test suite: free ports, a private run
#                                                directory, the page's key lines checked)
# The router listens on 7100 as in the README; PD_TRANSCRIPT_PORT picks another port.
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
build=${1:-build}
out=${2:-docs/TRANSCRIPT.md}
case $build in /*) ;; *) build=$PWD/$build ;; esac
[ -x "$build/bin/pdctl" ] || { echo "transcript: $build/bin/pdctl not built" >&2; exit 1; }
export PATH="$build/bin:$PATH"
export PD_RUN_DIR=.pdkv/run
unset PD_LOG_LEVEL
work=$(mktemp -d)

port=${PD_TRANSCRIPT_PORT:-7100}
http_port=8000
if $check; then
    # Ports nothing listens on: the router's two, the workers' events (base + 10..12), HTTP.
    busy() { ss -Htln | awk '{print $4}' | grep -qE ":($1|$(($1 + 1))|$(($1 + 10))|$(($1 + 11))|$(($1 + 12))|$(($1 + 20)))\$"; }
    port=$((20000 + RANDOM % 30000))
    while busy "$port"; do port=$((20000 + RANDOM % 30000)); done
    http_port=$((port + 20))
    export PD_RUN_DIR=$work/run PD_DEMO_HTTP_PORT=$http_port
    out=$work/TRANSCRIPT.md
fi

if [ "$port" = 7100 ]; then set_port=() router=(); else
    set_port=(--set "network.base_port=$port") router=(-r ":$port"); fi
cleanup() {
    pdctl down deploy/local.yaml "${set_port[@]}" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
pdctl down deploy/local.yaml "${set_port[@]}" >/dev/null 2>&1 || true

body=$work/body.md
: >"$body"
say() { printf '%s\n\n' "$*" >>"$body"; }
# run CMD...: show "$ CMD", its stdout and stderr as they interleave, and a non-zero exit.
run() {
    local rc=0
    {
        printf '```console\n$'
        local a
        for a in "$@"; do
            case $a in *[\ \"\']*) printf ' "%s"' "$a" ;; *) printf ' %s' "$a" ;; esac
        done
        printf '\n'
        "$@" 2>&1 || rc=$?
        [ "$rc" -eq 0 ] || printf '[exit status %d]\n' "$rc"
        printf '```\n\n'
    } >>"$body" 2>&1
    return 0
}

say "## 1. The demo"
say "\`make demo\` installs the dependencies, builds, makes the default model and runs
\`deploy/demo.sh\`: a cluster comes up, answers one prompt, and its tokens are checked
against a single process. Here the build already exists, so the script runs alone:"
if [ "$port" = 7100 ]; then run deploy/demo.sh "$build"
else run env PD_DEMO_PORT="$port" deploy/demo.sh "$build"; fi

say "## 2. A request before any cluster runs"
say "Nothing listens yet. \`submit\` says so at once instead of waiting (\`--wait 30\` would
wait up to 30 s for a router to come up):"
run pdctl submit "${router[@]}" -p "Once upon a time"

say "## 3. Bring a cluster up"
say "\`-d\` detaches: \`up\` returns once every worker has registered, printing each as it
does; the roles' logs go to \`.pdkv/run\`."
run pdctl up -d deploy/local.yaml "${set_port[@]}"
say "Starting it twice is refused, naming what runs:"
run pdctl up -d deploy/local.yaml "${set_port[@]}"

say "## 4. Status"
say "\`status\` takes the manifest (or \`-r HOST:PORT\`) and lists the workers:"
run pdctl status deploy/local.yaml

say "## 5. Submit"
say "With no \`--seed\`, each request samples with a fresh seed, printed with the usage; the
model has random weights, so the text is noise:"
run pdctl submit "${router[@]}" -p "Once upon a time" -n 16
seed=$(pdctl submit "${router[@]}" -p "Once upon a time" -n 16 --json |
       grep -o '"seed":[0-9]*' | cut -d: -f2)
say "Repeating a seed repeats the answer token for token (here one printed by an earlier
\`--json\` run, seed $seed):"
run pdctl submit "${router[@]}" -p "Once upon a time" -n 16 --seed "$seed"
run pdctl submit "${router[@]}" -p "Once upon a time" -n 16 --seed "$seed"
say "A mistyped option gets a suggestion:"
run pdctl submit "${router[@]}" -p "Once upon a time" --max-tokns 16
run pdctl submit "${router[@]}" -p "Once upon a time" --temprature 0

say "## 6. A short benchmark"
say "Eight requests at two per second, 1100-token prompts that share their first 1024
tokens (prompts of 1024 tokens and more are cached): the first computes the prefix, the
others read it from the cache:"
run pdctl bench "${router[@]}" -N 8 --rate 2 --prompt-len 1100 --shared-prefix 1024 \
    --max-tokens 8 --json "$work/bench.json"

say "## 7. A manifest with a typo"
say "A copy of \`deploy/local.yaml\` with \`policy\` misspelt: the error names the file, the
line and the key it probably meant, and nothing starts:"
sed 's/^  policy: kv/  polcy: kv/' deploy/local.yaml >"$work/my-cluster.yaml"
(cd "$work" && run pdctl up -d my-cluster.yaml "${set_port[@]}")

say "## 8. Down"
say "\`down\` finds the cluster by the manifest's name (a \`--set network.base_port\` given to
\`up\` need not be repeated) and says what it stopped; a second \`down\` has nothing to do:"
run pdctl down deploy/local.yaml
run pdctl down deploy/local.yaml

say "## 9. The logs"
say "Each role logged at info level to the run directory:"
run ls "$PD_RUN_DIR"
run head -n 4 "$PD_RUN_DIR/local-router.log"

sed -i "s|$work/||g" "$body"
{
    echo "# A new user's first ten minutes"
    echo
    echo "What pdkv's tools print for a newcomer following the README on one machine, from"
    echo "the demo to tearing the cluster down. Generated by \`deploy/transcript.sh\` from a"
    echo "real run (timings, pids and seeds differ from run to run); rerun it after changing"
    echo "what a command prints."
    echo
    cat "$body"
} >"$out"
if ! $check; then
    echo "transcript: wrote $out"
    exit 0
fi
# What the page must keep showing; a change that breaks one of these breaks the page.
missing=0
for want in "== exact: the cluster's" "cannot reach router at" "registered (2 of 2)" \
    "is already running" ", seed " "did you mean --max-tokens?" "did you mean --temperature?" \
    "cache hit rate" "TTFT client (ms)" "wrote bench.json" \
    "line 12: unknown key 'router.polcy'; did you mean 'router.policy'?" \
    "stopped cluster 'local': 3 processes" "cluster 'local' is not running" \
    "router info"; do
    if ! grep -qF -- "$want" "$out"; then
        echo "transcript: missing: $want" >&2
        missing=1
    fi
done
if [ "$missing" != 0 ]; then
    cat "$out" >&2
    exit 1
fi
echo "transcript: every key line is there"
