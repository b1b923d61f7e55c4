#!/usr/bin/env python3
"""Write a randomly initialised llama2.c checkpoint (.bin, interleaved-pair RoPE) of the
shape of llama2.c's stories15M (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000,
context 256), so that measurements that need a llama2.c-shaped model run without a
download. Weights: N(0, 1/sqrt(fan_in)), norms 1, embedding N(0, 0.15^2) and tied classifier, so
that logits have a spread of a few nats (with N(0, 1) every next-token distribution is
almost one-hot).

    deploy/bench/llama2c-random.py OUT.bin [--seed S] [--dim D --layers L --heads H
                                            --kv-heads K --hidden F --vocab V --ctx T]
"""
import argparse
import array
import math
import random
import struct
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim", type=int, default=288)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--embed-std", type=float, default=0.15)
    a = ap.parse_args()
    if a.dim % a.heads or a.heads % a.kv_heads:
        sys.exit("llama2c-random: heads must divide dim and kv-heads must divide heads")
    rng = random.Random(a.seed)
    hd = a.dim // a.heads
    kv = a.kv_heads * hd

    def normal(n, std):
        return array.array("f", (rng.gauss(0.0, std) for _ in range(n)))

    def ones(n):
        return array.array("f", [1.0]) * n

    L, D, F = a.layers, a.dim, a.hidden
    with open(a.out, "wb") as f:
        f.write(struct.pack("<7i", D, F, L, a.heads, a.kv_heads, a.vocab, a.ctx))
        parts = [
            normal(a.vocab * D, a.embed_std),  # token embedding (vocab, dim), tied classifier
            ones(L * D),                       # rms_att (L, dim)
            normal(L * D * D, 1 / math.sqrt(D)),   # wq (L, dim, dim)
            normal(L * kv * D, 1 / math.sqrt(D)),  # wk (L, kv_dim, dim)
            normal(L * kv * D, 1 / math.sqrt(D)),  # wv (L, kv_dim, dim)
            normal(L * D * D, 1 / math.sqrt(D)),   # wo (L, dim, dim)
            ones(L * D),                       # rms_ffn (L, dim)
            normal(L * F * D, 1 / math.sqrt(D)),   # w1 (L, hidden, dim)
            normal(L * D * F, 1 / math.sqrt(F)),   # w2 (L, dim, hidden)
            normal(L * F * D, 1 / math.sqrt(D)),   # w3 (L, hidden, dim)
            ones(D),                           # rms_final (dim)
            array.array("f", [0.0]) * (a.ctx * hd),  # freq_cis real+imag (unused)
        ]
        for p in parts:
            p.tofile(f)


if __name__ == "__main__":
    main()
