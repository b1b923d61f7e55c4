// The official OpenAI SDK against pd-gateway: completions and chat, whole and streamed;
// tokens equal `pdctl generate`'s, usage equals the cluster's accounting, and the cache
// is per key (tenant).
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { env, generate, render, fullBlocks, check } from './common.mjs';

const a = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: env.keyA, maxRetries: 0 });
const b = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: env.keyB, maxRetries: 0 });
// Longer than the router's --min-cached-prefix (64 in the test): cached automatically.
const prompt = 'The quick brown fox jumps over the lazy dog. '.repeat(3);

await check('openai models.list', async () => {
  const list = await a.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [env.name]);
});

await check('openai completions: exact, then cached, per key', async () => {
  const ref = generate(prompt, 12, 5, 0.7);
  const params = { model: env.name, prompt, max_tokens: 12, seed: 5, temperature: 0.7,
    return_token_ids: true };
  const r1 = await a.completions.create(params);
  assert.deepEqual(r1.prompt_token_ids, ref.prompt_tokens);
  assert.deepEqual(r1.choices[0].token_ids, ref.tokens);
  assert.equal(r1.choices[0].text, ref.text);
  assert.equal(r1.usage.prompt_tokens, ref.prompt_tokens.length);
  assert.equal(r1.usage.completion_tokens, ref.tokens.length);
  assert.equal(r1.usage.prompt_tokens_details.cached_tokens, 0);

  // The same request streamed: same tokens; every full block now comes from the cache.
  const stream = await a.completions.create({ ...params, stream: true,
    stream_options: { include_usage: true } });
  let text = '';
  const ids = [];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].text;
      ids.push(...(chunk.choices[0].token_ids ?? []));
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual(ids, ref.tokens);
  assert.equal(text, ref.text);
  assert.equal(usage.prompt_tokens_details.cached_tokens, fullBlocks(ref.prompt_tokens.length));

  // Another key is another tenant: it sees none of it.
  const r3 = await b.completions.create(params);
  assert.deepEqual(r3.choices[0].token_ids, ref.tokens);
  assert.equal(r3.usage.prompt_tokens_details.cached_tokens, 0);
});

await check('openai chat.completions: exact, whole and streamed', async () => {
  const messages = [{ role: 'system', content: 'You tell short stories.' },
    { role: 'user', content: 'Once upon a time' }];
  const rendered = render([['System', 'You tell short stories.'], ['User', 'Once upon a time']]);
  const ref = generate(rendered, 10, 11, 0.9);
  const params = { model: env.name, messages, max_completion_tokens: 10, seed: 11,
    temperature: 0.9, return_token_ids: true };
  const r = await a.chat.completions.create(params);
  assert.deepEqual(r.prompt_token_ids, ref.prompt_tokens);
  assert.deepEqual(r.choices[0].token_ids, ref.tokens);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, ref.text);
  assert.equal(r.choices[0].finish_reason, ref.finish_reason === 'length' ? 'length' : 'stop');

  const stream = await a.chat.completions.create({ ...params, stream: true,
    stream_options: { include_usage: true } });
  let text = '';
  const ids = [];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].delta.content ?? '';
      ids.push(...(chunk.choices[0].token_ids ?? []));
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, ref.text);
  assert.deepEqual(ids, ref.tokens);
  assert.equal(usage.completion_tokens, ref.tokens.length);
  assert.equal(usage.prompt_tokens, ref.prompt_tokens.length);
});

await check('openai errors reach the SDK as its error classes', async () => {
  await assert.rejects(a.completions.create({ model: 'no-such-model', prompt: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError);
  const bad = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: 'not-a-key', maxRetries: 0 });
  await assert.rejects(bad.completions.create({ model: env.name, prompt: 'x' }),
    (e) => e instanceof OpenAI.AuthenticationError);
  await assert.rejects(a.completions.create({ model: env.name, prompt: 'x', temperature: 9 }),
    (e) => e instanceof OpenAI.BadRequestError);
});
