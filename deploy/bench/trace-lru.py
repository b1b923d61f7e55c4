#!/usr/bin/env python3
"""Hit rate of a Mooncake trace, scaled as `pdctl bench --trace` scales it, under an LRU
cache of a given number of blocks: the comparison point that says how much of the gap
between a measured hit rate and the ideal infinite cache is capacity.

  deploy/bench/trace-lru.py TRACE --limit 800 --len-scale 32 --max-len 2048 \
      --blocks 0 4096 8192

Block tokens = 512 / len-scale (the router's block size when that is 16). Only full
blocks are cached, and never the block holding the prompt's last token (decode always
receives that one from prefill), as in the workers. --blocks 0 is an infinite cache with
those two rules (pdctl bench's ideal counts partial blocks too, so it is slightly higher).
"""
import argparse
import collections
import json
import math


def load(path, limit, len_scale, max_len):
    b = int(512 / len_scale)
    reqs = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                x = json.loads(line)
                ids = x["hash_ids"]
                n = len(ids)
                last = x["input_length"] - 512 * (n - 1)
            except (ValueError, KeyError, TypeError):
                continue
            last_t = max(1, math.ceil(last * b / 512))
            out = max(1, math.ceil(x["output_length"] / len_scale))
            n_in = b * (n - 1) + last_t
            if max_len and n_in + out > max_len:
                n_in = max_len - out
                ids = ids[: math.ceil(n_in / b)]
            reqs.append((ids, n_in))
            if limit and len(reqs) == limit:
                break
    return reqs, b


def simulate(reqs, b, cap_blocks):
    lru = collections.OrderedDict()
    hit = total = 0
    for ids, n_in in reqs:
        total += n_in
        chain, key = [], ()
        for h in ids[: n_in // b]:
            key = key + (h,)
            chain.append(key)
        readable = min((n_in - 1) // b, len(chain))
        k = 0
        while k < readable and chain[k] in lru:
            k += 1
        hit += b * k
        for c in chain:
            if c in lru:
                lru.move_to_end(c)
            else:
                lru[c] = True
                if cap_blocks and len(lru) > cap_blocks:
                    lru.popitem(last=False)
    return hit, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--len-scale", type=float, default=8)
    ap.add_argument("--max-len", type=int, default=0)
    ap.add_argument("--blocks", type=int, nargs="+", default=[0])
    a = ap.parse_args()
    reqs, b = load(a.trace, a.limit, a.len_scale, a.max_len)
    for cap in a.blocks:
        hit, total = simulate(reqs, b, cap)
        what = "infinite" if cap == 0 else f"LRU {cap} blocks ({cap * b} tokens)"
        print(f"{len(reqs)} requests, {b} tokens per block, {what}: "
              f"{100.0 * hit / total:.1f}% ({hit} of {total} prompt tokens)")


if __name__ == "__main__":
    main()
