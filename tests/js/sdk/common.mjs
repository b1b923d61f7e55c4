// Shared by the SDK tests: the environment the C test (tests/gateway/test_gw_sdk.c) sets,
// and `pdctl generate --json`, the one-process reference every cluster token must equal.
import { execFileSync } from 'node:child_process';

export const env = {
  url: process.env.PD_GW_URL,          // the gateway, http://127.0.0.1:PORT
  keyA: process.env.PD_KEY_A,          // two keys of two tenants
  keyB: process.env.PD_KEY_B,
  pdctl: process.env.PD_PDCTL,         // build/bin/pdctl
  model: process.env.PD_MODEL,         // the model directory the cluster serves
  name: process.env.PD_MODEL_NAME,     // the name the gateway serves it under
  blockTokens: 16,
};

// pdctl generate -p TEXT: {prompt_tokens, tokens, text, finish_reason}.
export function generate(prompt, n, seed, temperature) {
  const out = execFileSync(env.pdctl, ['generate', '-m', env.model, '-p', prompt, '-n', String(n),
    '--seed', String(seed), '--temperature', String(temperature), '--json'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out.trim().split('\n').pop());
}

// The built-in chat template of the gateway (docs/API.md).
export function render(turns, generationPrompt = true) {
  return turns.map(([role, text]) => `${role}: ${text}\n`).join('') + (generationPrompt ? 'Assistant:' : '');
}

// Full blocks of a prefix of n tokens.
export const fullBlocks = (n) => Math.floor(n / env.blockTokens) * env.blockTokens;

export function check(name, fn) {
  return fn().then(() => console.log(`ok   ${name}`), (e) => {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exitCode = 1;
  });
}
