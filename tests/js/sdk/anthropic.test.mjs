// The official Anthropic SDK against pd-gateway: messages, streaming, cache_control
// breakpoints; tokens equal `pdctl generate`'s and the usage fields are the cluster's
// cache accounting (written once, read after, per key).
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { env, generate, render, fullBlocks, check } from './common.mjs';

const a = new Anthropic({ baseURL: env.url, apiKey: env.keyA, maxRetries: 0 });
const b = new Anthropic({ baseURL: env.url, apiKey: env.keyB, maxRetries: 0 });
const system = 'You are a storyteller who speaks only in short sentences. '.repeat(2);
const question = 'Tell me about the sea.';
// The breakpoint after the system block: BOS + "System: " + system.
const breakTokens = 1 + 'System: '.length + system.length;

function params(extra = {}) {
  return { model: env.name, max_tokens: 8, temperature: 0, return_token_ids: true,
    system: [{ type: 'text', text: system, cache_control: { type: 'ephemeral', ttl: '1h' } }],
    messages: [{ role: 'user', content: question }], ...extra };
}

await check('anthropic messages: exact tokens, cache written then read, per key', async () => {
  const ref = generate(render([['System', system], ['User', question]]), 8, 0, 0);
  const n = ref.prompt_tokens.length;
  const m1 = await a.messages.create(params());
  assert.deepEqual(m1.prompt_token_ids, ref.prompt_tokens);
  assert.deepEqual(m1.token_ids, ref.tokens);
  assert.equal(m1.content[0].type, 'text');
  assert.equal(m1.content[0].text, ref.text);
  assert.equal(m1.stop_reason, ref.finish_reason === 'length' ? 'max_tokens' : 'end_turn');
  assert.equal(m1.usage.cache_creation_input_tokens, fullBlocks(breakTokens));
  assert.equal(m1.usage.cache_read_input_tokens, 0);
  assert.equal(m1.usage.input_tokens, n - fullBlocks(breakTokens));
  assert.equal(m1.usage.output_tokens, ref.tokens.length);

  // Streamed, same key: the prefix is read from the cache, nothing is written.
  const events = [];
  const stream = a.messages.stream(params());
  stream.on('streamEvent', (ev) => events.push(ev));
  const m2 = await stream.finalMessage();
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'message_start');
  assert.ok(types.includes('content_block_delta'));
  assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
  assert.equal(m2.content[0].text, ref.text);
  const ids = events.filter((e) => e.type === 'content_block_delta').flatMap((e) => e.token_ids ?? []);
  assert.deepEqual(ids, ref.tokens);
  assert.equal(m2.usage.cache_read_input_tokens, fullBlocks(breakTokens));
  assert.equal(m2.usage.cache_creation_input_tokens, 0);
  assert.equal(m2.usage.input_tokens, n - fullBlocks(breakTokens));
  assert.equal(m2.usage.output_tokens, ref.tokens.length);

  // Another key: nothing to read, its own copy written.
  const m3 = await b.messages.create(params());
  assert.deepEqual(m3.token_ids, ref.tokens);
  assert.equal(m3.usage.cache_read_input_tokens, 0);
  assert.equal(m3.usage.cache_creation_input_tokens, fullBlocks(breakTokens));
});

await check('anthropic messages without cache_control cache nothing', async () => {
  const p = params();
  p.system = system;
  const m = await a.messages.create(p);
  assert.equal(m.usage.cache_read_input_tokens, 0);
  assert.equal(m.usage.cache_creation_input_tokens, 0);
});

await check('anthropic stop_sequences and errors', async () => {
  const ref = generate(render([['System', system], ['User', question]]), 8, 0, 0);
  const chars = [...ref.text];
  if (chars.length >= 2) {
    const stop = chars[1];
    const m = await a.messages.create(params({ stop_sequences: [stop] }));
    assert.equal(m.stop_reason, 'stop_sequence');
    assert.equal(m.stop_sequence, stop);
    assert.equal(m.content[0].text, ref.text.slice(0, ref.text.indexOf(stop)));
  }
  await assert.rejects(a.messages.create(params({ model: 'claude-nothing' })),
    (e) => e instanceof Anthropic.NotFoundError);
  const five = Array.from({ length: 5 }, () => ({ type: 'text', text: 'x',
    cache_control: { type: 'ephemeral' } }));
  await assert.rejects(a.messages.create(params({ system: five })),
    (e) => e instanceof Anthropic.BadRequestError);
});
