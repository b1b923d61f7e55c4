#!/usr/bin/env python3
"""Build corpus.txt, the text pdkv's tokenizers are compared on against the reference.

Sources: the King James Bible (public domain; Debian's bible-kjv prints it), pdkv's own
C sources (code), and generated lines: numbers, whitespace runs, CJK, emoji, combining
characters, scripts from right to left, special-token strings, ill-formed UTF-8 and
random mixtures of all of them. Deterministic for a seed. Each line of the output is one
test case (no line holds a newline; some hold a carriage return).

    python3 tests/data/tokenizer/make_corpus.py [--kjv FILE] [-o corpus.txt]

Without --kjv the text comes from `bible -f gen1:1-rev22:21` (apt-get install bible-kjv).
"""
import argparse
import glob
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SPECIALS = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>", "<|im_end|>",
            "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
            "<|reserved_special_token_3|>", "<|fim_prefix|>", "[INST]", "[/INST]", "<<SYS>>"]
NEAR_SPECIALS = ["<|im_", "<|eot_id", "< s>", "<<s>>", "<|IM_START|>", "<s >", "|>", "<|",
                 "<|eot_id|><|eot_id|>", "</s></s>", "<s><s>"]
WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", " \t ", "\r", "\u00a0", "\u3000", "\u2009",
              "\u200b", "\u2028", "\u0085", "\ufeff", "\u180e", "\u202f", "\u205f", "\x0b",
              "\x0c", "        "]
EMOJI = ["🙂", "😀", "👍🏽", "👩‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "1️⃣", "❤️", "🤖", "🧑🏿‍💻",
         "🐈‍⬛", "✨", "🎉", "😂😂😂", "👋🏻", "🫠", "🦀", "☕", "⚡"]
COMBINING = ["e\u0301", "a\u0300", "o\u0308", "n\u0303", "c\u0327", "u\u0308\u0301",
             "A\u030a", "i\u0307", "\u1100\u1161\u11a8", "\u0915\u094d\u0937", "Z\u0351\u0352",
             "q\u0323\u0307", "\u05e9\u05c1", "\u0627\u064e", "\u0e01\u0e34", "\u00e9",
             "\u212b", "\u1e9b\u0323", "\ufb01", "\u2126"]
SCRIPTS = ["Привет, как дела?", "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם",
           "नमस्ते दुनिया", "สวัสดีชาวโลก", "გამარჯობა", "Բարեւ", "ሰላም ልዑል", "Tiếng Việt có dấu",
           "Zażółć gęślą jaźń", "Ğüşiöç İstanbul ıi", "Straße ß ẞ", "ſtraße ſ", "K Kelvin"]
CONTRACTIONS = ["I'm", "I'M", "don't", "DON'T", "you're", "YOU'RE", "we've", "they'll",
                "she'd", "it's", "IT'S", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
                "rock'n'roll", "o'clock", "y'all'd've", "it\u2019s"]
INVALID = [b"\xff", b"\x80", b"\xc3", b"\xe6\x97", b"\xf0\x9f\x99", b"\xed\xa0\x80",
           b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xfe\xfe", b"\xc3\x28",
           b"\xa0\xa1", b"\xe2\x82\x28", b"\xf0\x28\x8c\xbc", b"\xf8\x88\x80\x80\x80"]


def cjk(rng, n):
    ranges = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3),
              (0x3400, 0x4DBF), (0xFF01, 0xFF5E), (0x3000, 0x303F), (0x20000, 0x2A6DF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def number(rng):
    kind = rng.randrange(9)
    if kind == 0:
        return str(rng.randint(0, 10 ** rng.randint(1, 18)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
    if kind == 2:
        return f"{rng.randint(1, 10**9):,}"
    if kind == 3:
        return f"{rng.uniform(0, 1):.3e}"
    if kind == 4:
        return f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == 5:
        return f"+1 ({rng.randint(200, 999)}) {rng.randint(100, 999)}-{rng.randint(0, 9999):04d}"
    if kind == 6:
        return "0x" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(rng.randint(1, 16)))
    if kind == 7:
        return rng.choice(["١٢٣٤", "४२", "①②③", "Ⅻ", "½", "²³", "𝟙𝟚𝟛", "١٫٥", "๑๒๓"])
    return "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(20, 60)))


def kjv_lines(path):
    if path:
        with open(path, encoding="utf-8") as f:
            raw = f.read().splitlines()
    else:
        raw = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    out = []
    for line in raw:
        # "Ge1:1 In the beginning ..." -> the verse text
        parts = line.split(" ", 1)
        if len(parts) == 2 and ":" in parts[0]:
            out.append(parts[1].strip())
    return out


def code_lines():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "common", "*", "src", "*.c"))):
        with open(path, encoding="utf-8") as f:
            out.extend(l.rstrip("\n") for l in f)
    return [l for l in out if l.strip()]


def mixed(rng, pools):
    parts = []
    for _ in range(rng.randint(2, 12)):
        parts.append(rng.choice(pools)(rng))
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kjv", help="the KJV as text, one verse per line (default: run bible)")
    ap.add_argument("-o", "--output", default=os.path.join(os.path.dirname(__file__), "corpus.txt"))
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    verses = kjv_lines(args.kjv)
    code = code_lines()
    lines = []
    # English prose: 9,000 verses, in order from an even stride, plus some paragraphs.
    stride = max(1, len(verses) // 9000)
    lines += verses[::stride][:9000]
    for _ in range(300):
        i = rng.randrange(len(verses) - 8)
        lines.append(" ".join(verses[i:i + rng.randint(2, 8)]))
    # Code: 3,000 lines of C, leading whitespace kept.
    lines += code[:: max(1, len(code) // 3000)][:3000]

    pools = [
        lambda r: r.choice(WHITESPACE),
        lambda r: number(r),
        lambda r: cjk(r, r.randint(1, 12)),
        lambda r: r.choice(EMOJI),
        lambda r: r.choice(COMBINING),
        lambda r: r.choice(SCRIPTS),
        lambda r: r.choice(CONTRACTIONS),
        lambda r: r.choice(SPECIALS),
        lambda r: r.choice(NEAR_SPECIALS),
        lambda r: r.choice(verses).split(" ")[0] + " ",
        lambda r: r.choice("!?.,;:-_()[]{}<>\"'`~@#$%^&*+=|\\/"),
    ]
    gens = {
        "numbers": lambda r: " ".join(number(r) for _ in range(r.randint(1, 6))),
        "whitespace": lambda r: "".join(r.choice(WHITESPACE) + (r.choice(CONTRACTIONS) if r.random() < 0.5 else "x") for _ in range(r.randint(1, 6))) + r.choice(WHITESPACE),
        "cjk": lambda r: cjk(r, r.randint(1, 40)) + r.choice(["", "。", "、", "！", " ", "ですね"]),
        "emoji": lambda r: " ".join(r.choice(EMOJI) for _ in range(r.randint(1, 8))),
        "combining": lambda r: " ".join(r.choice(COMBINING) * r.randint(1, 3) for _ in range(r.randint(1, 6))),
        "scripts": lambda r: r.choice(SCRIPTS) + " " + r.choice(SCRIPTS),
        "contractions": lambda r: " ".join(r.choice(CONTRACTIONS) for _ in range(r.randint(1, 8))),
        "specials": lambda r: mixed(r, [lambda q: q.choice(SPECIALS), lambda q: q.choice(NEAR_SPECIALS), lambda q: " ", lambda q: q.choice(verses).split(" ")[0]]),
        "mixed": lambda r: mixed(r, pools),
    }
    counts = {"numbers": 900, "whitespace": 900, "cjk": 900, "emoji": 700, "combining": 700,
              "scripts": 500, "contractions": 500, "specials": 900, "mixed": 1700}
    for name, n in counts.items():
        for _ in range(n):
            lines.append(gens[name](rng))
    text_lines = [l.encode("utf-8", "surrogatepass") for l in lines]
    # Ill-formed UTF-8: bad bytes inside and around valid text.
    for _ in range(600):
        base = rng.choice(lines).encode("utf-8")[:80]
        cut = rng.randint(0, len(base))
        text_lines.append(base[:cut] + rng.choice(INVALID) + base[cut:])
    # Long lines: repeated characters and long words without spaces.
    for ch in ["a", " ", "\t", "ab", "日本", "🙂", "1", "-", "\u00e9", "<|im_start|>"]:
        text_lines.append((ch * rng.randint(200, 1500)).encode("utf-8"))
    for l in text_lines:
        assert b"\n" not in l
    with open(args.output, "wb") as f:
        for l in text_lines:
            f.write(l + b"\n")
    print(f"{args.output}: {len(text_lines)} lines, {sum(len(l) + 1 for l in text_lines)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
