#!/usr/bin/env python3
"""pdkv's CPU backend beside llama.cpp on the same model, same run: 512-token prefill and
decode at context 512, f32, bf16 and pdkv int8 against llama.cpp q8_0, each at the given
thread counts, the two programs alternating, medians of the rounds (docs/PERFORMANCE.md,
compute section).

    deploy/bench/llamacpp-compare.py --kbench build/bin/pd-kbench \
        --llama-bench PEER/llama.cpp/build/bin/llama-bench --gguf-prefix PEER/m50 \
        [--preset m50] [--rounds 5] [--threads 1,2] [--out runs.jsonl]

The GGUF files PREFIX-f32.gguf, PREFIX-bf16.gguf and PREFIX-q8_0.gguf come from
deploy/bench/gguf-from-pdkv.py on `pdctl model new --preset m50 --seed 1`, which is
the model pd-kbench builds (random weights, seed 1). llama-bench: pp512 (-p 512 -n 0) and
tg of 64 tokens at depth 512 (-p 0 -n 64 -d 512), -r 1 per round; pd-kbench: --prompt 512
--decode 64 (prefill median of 1 run, decode median of its 64 steps at context 512-575).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"llamacpp-compare: {' '.join(cmd)} failed: {p.stderr[-600:]}")
    return p.stdout


def llama(a, gguf, t):
    pp = json.loads(run([a.llama_bench, "-m", gguf, "-p", "512", "-n", "0", "-t", str(t),
                         "-r", "1", "-o", "json"]))
    tg = json.loads(run([a.llama_bench, "-m", gguf, "-p", "0", "-n", "64", "-d", "512",
                         "-t", str(t), "-r", "1", "-o", "json"]))
    return pp[0]["avg_ts"], tg[0]["avg_ts"]


def pdkv(a, dtype, t):
    d = json.loads(run([a.kbench, "--preset", a.preset, "--prompt", "512", "--decode", "64",
                        "--runs", "1", "--batch", "1", "--memcpy-mib", "256", "--threads", str(t), "--weights",
                        dtype, "--json"]))
    r = d["runs"][0]
    return r["prefill_tok_s"], r["decode_tok_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbench", required=True)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--gguf-prefix", required=True)
    ap.add_argument("--preset", default="m50")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out")
    a = ap.parse_args()
    pairs = [("f32", "f32"), ("bf16", "bf16"), ("int8", "q8_0")]
    threads = [int(t) for t in a.threads.split(",")]
    res = {}
    log = open(a.out, "a") if a.out else None
    load0 = os.getloadavg()[0]
    for r in range(a.rounds):
        for t in threads:
            for pd_dt, ll_dt in pairs:
                order = [0, 1] if (r + len(res)) % 2 == 0 else [1, 0]
                for who in order:
                    if who == 0:
                        pp, tg = pdkv(a, pd_dt, t)
                        key = ("pdkv", pd_dt, t)
                    else:
                        pp, tg = llama(a, f"{a.gguf_prefix}-{ll_dt}.gguf", t)
                        key = ("llama.cpp", ll_dt, t)
                    e = res.setdefault(key, {"pp": [], "tg": []})
                    e["pp"].append(pp)
                    e["tg"].append(tg)
                    rec = {"round": r, "who": key[0], "dtype": key[1], "threads": t,
                           "prefill_tok_s": pp, "decode_tok_s": tg, "load": os.getloadavg()[0]}
                    print(json.dumps(rec), file=sys.stderr)
                    if log:
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
    print(f"{a.preset}: {a.rounds} alternating rounds, load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; medians (min-max)")
    print("| threads | pdkv | llama.cpp | prefill 512 pdkv tok/s | llama.cpp | ratio |"
          " decode pdkv tok/s | llama.cpp | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in threads:
        for pd_dt, ll_dt in pairs:
            p, l_ = res[("pdkv", pd_dt, t)], res[("llama.cpp", ll_dt, t)]
            mpp, lpp = statistics.median(p["pp"]), statistics.median(l_["pp"])
            mtg, ltg = statistics.median(p["tg"]), statistics.median(l_["tg"])
            print(f"| {t} | {pd_dt} | {ll_dt} | {mpp:.0f} ({min(p['pp']):.0f}-{max(p['pp']):.0f})"
                  f" | {lpp:.0f} ({min(l_['pp']):.0f}-{max(l_['pp']):.0f}) | {mpp / lpp:.2f}x |"
                  f" {mtg:.1f} ({min(p['tg']):.1f}-{max(p['tg']):.1f}) | {ltg:.1f}"
                  f" ({min(l_['tg']):.1f}-{max(l_['tg']):.1f}) | {mtg / ltg:.2f}x |")


if __name__ == "__main__":
    main()
