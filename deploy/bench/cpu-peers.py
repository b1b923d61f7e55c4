#!/usr/bin/env python3
"""Decode speed of pdkv's CPU backend beside llama2.c's run.c on the same checkpoint, runs
alternating (A B C ..., the order rotated each round), medians (docs/PERFORMANCE.md,
compute section).

    deploy/bench/cpu-peers.py --pdctl build/bin/pdctl --run DIR/run --runomp DIR/runomp \
        --model m42.bin --tokenizer tokenizer.bin [--hf-prefix m42] [--rounds 5] \
        [--threads 1,2] [--steps 256] [--out runs.jsonl]

--model is a llama2.c .bin; with --hf-prefix P the directories P-bf16 and P-int8 (from
`pdctl model quantize -m MODEL -o P-bf16 --dtype bf16`, and int8) run too, on pdkv only.
Every run starts from BOS alone and generates `steps` tokens greedily (run.c -n steps
makes one forward pass per token, BOS's first), so both programs time the same steps - 1
decode steps: run.c's own 'achieved tok/s' (the passes after the first) and pdctl's
decode tokens/s (the steps after the prefill of BOS). The process CPU time of each
run (user + system, from wait4) is recorded beside it: on a shared machine the steadier
figure. The greedy text of each pdkv f32 run must equal run.c's (checked; a mismatch is
reported). Threads: run for 1, runomp with OMP_NUM_THREADS=N for N > 1.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time


def run_one(cmd, env=None):
    """Run cmd; return (stdout, stderr, cpu_seconds, wall_seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, **(env or {})))
    out, err = p.communicate()
    wall = time.monotonic() - t0
    # communicate() reaped the child: take its rusage from the children's totals
    return out.decode(errors="replace"), err.decode(errors="replace"), p.returncode, wall


def children_cpu():
    r = os.times()
    return r.children_user + r.children_system


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdctl", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--runomp", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--hf-prefix")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--out")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    n_new = a.steps

    contenders = []  # (label, threads, kind, cmd, env)
    for t in threads:
        prog = a.run if t == 1 else a.runomp
        contenders.append((f"llama2.c run{'omp' if t > 1 else ''} f32", t, "l2c",
                           [prog, a.model, "-z", a.tokenizer, "-t", "0", "-n", str(a.steps),
                            "-i", ""], {"OMP_NUM_THREADS": str(t)}))
        models = [("f32", a.model)]
        if a.hf_prefix:
            models += [("bf16", a.hf_prefix + "-bf16"), ("int8", a.hf_prefix + "-int8")]
        for dt, m in models:
            contenders.append((f"pdkv {dt}", t, "pd",
                               [a.pdctl, "generate", "-m", m, "-t", a.tokenizer, "--tokens",
                                "1", "-n", str(n_new), "--temperature", "0", "--threads",
                                str(t), "--json"], {}))

    log = open(a.out, "a") if a.out else None
    res = {}  # (label, threads) -> {"tps": [], "cpu": []}
    texts = {}
    load0 = os.getloadavg()
    for r in range(a.rounds):
        k = r % len(contenders)
        for label, t, kind, cmd, env in contenders[k:] + contenders[:k]:
            c0 = children_cpu()
            out, err, rc, wall = run_one(cmd, env)
            cpu = children_cpu() - c0
            if rc != 0:
                sys.exit(f"cpu-peers: {' '.join(cmd)} failed ({rc}): {err[-400:]}")
            if kind == "l2c":
                m = re.search(r"achieved tok/s: ([0-9.]+)", err)
                tps = float(m.group(1))
                text = out.strip()
            else:
                d = json.loads(out)
                tps = d["timings"]["decode_tokens_per_s"]
                text = d["text"].strip()
            texts.setdefault((label.split()[-1], t, kind), text)
            e = res.setdefault((label, t), {"tps": [], "cpu": []})
            e["tps"].append(tps)
            e["cpu"].append(cpu)
            rec = {"round": r, "label": label, "threads": t, "tok_s": tps, "cpu_s": cpu,
                   "wall_s": wall, "load": os.getloadavg()[0]}
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            print(json.dumps(rec), file=sys.stderr)
    load1 = os.getloadavg()
    print(f"model {a.model}, {n_new} greedy tokens from BOS, {a.rounds} alternating rounds, "
          f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end")
    print("| contender | threads | decode tok/s (median) | min-max | process CPU s (median) |"
          " vs llama2.c tok/s | vs llama2.c CPU |")
    print("|---|---|---|---|---|---|---|")
    for (label, t), e in res.items():
        ref = res[(f"llama2.c run{'omp' if t > 1 else ''} f32", t)]
        mt, mc = statistics.median(e["tps"]), statistics.median(e["cpu"])
        rt, rcpu = statistics.median(ref["tps"]), statistics.median(ref["cpu"])
        print(f"| {label} | {t} | {mt:.1f} | {min(e['tps']):.1f}-{max(e['tps']):.1f} | "
              f"{mc:.2f} | {mt / rt:.2f}x | {rcpu / mc:.2f}x |")
    for t in threads:
        a_ = texts.get(("f32", t, "l2c"))
        b_ = texts.get(("f32", t, "pd"))
        same = a_ is not None and a_ == b_
        print(f"greedy text, {t} thread(s): pdkv f32 {'==' if same else '!='} run.c")


if __name__ == "__main__":
    main()
