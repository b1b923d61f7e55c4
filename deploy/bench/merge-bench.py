#!/usr/bin/env python3
"""Pool the per-request records of several `pdctl bench --json` files (interleaved rounds
of one configuration) and print the figures docs/PERFORMANCE.md quotes, computed as
pdctl bench computes them (percentiles interpolate linearly between closest ranks).

  deploy/bench/merge-bench.py NAME run1.json run2.json ...
"""
import json
import sys


def pct(values, p):
    v = sorted(x for x in values if x is not None)
    if not v:
        return float("nan")
    rank = p / 100.0 * (len(v) - 1)
    lo = int(rank)
    if lo + 1 >= len(v):
        return v[-1]
    return v[lo] + (rank - lo) * (v[lo + 1] - v[lo])


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    name, paths = sys.argv[1], sys.argv[2:]
    reqs = []
    for p in paths:
        with open(p) as f:
            reqs += json.load(f)["requests"]
    done = [r for r in reqs if r["status"] == "done"]
    errors = sum(1 for r in reqs if r["status"] == "error")
    prompt = sum(r["prompt_tokens"] for r in done)
    read = sum(r["usage"]["cache_read_input_tokens"] for r in done)
    srv = [r["server"] for r in done]
    share = [s["transfer_ms"] / s["ttft_ms"] for s in srv if s["ttft_ms"]]
    cold = [r["ttft_ms"] for r in done if r["usage"]["cache_read_input_tokens"] == 0]
    warm = [r["ttft_ms"] for r in done if r["usage"]["cache_read_input_tokens"] > 0]
    print(f"{name}: {len(done)} completed, {errors} errors, from {len(paths)} runs")
    print(f"  cache hit rate {100.0 * read / prompt if prompt else 0:.1f}% "
          f"({read} of {prompt} prompt tokens)")
    ttft = [r["ttft_ms"] for r in done]
    tpot = [r["tpot_ms"] for r in done]
    print(f"  TTFT client p50 {pct(ttft, 50):.1f} p90 {pct(ttft, 90):.1f} ms; "
          f"server p50 {pct([s['ttft_ms'] for s in srv], 50):.1f} ms")
    print(f"  TTFT cold p50 {pct(cold, 50):.1f} (n {len(cold)}), cache hit p50 "
          f"{pct(warm, 50):.1f} (n {len(warm)}) ms")
    warm_prefill = [r["server"]["prefill_ms"] for r in done
                    if r["usage"]["cache_read_input_tokens"] > 0]
    if warm:
        print(f"  cache hit TTFT mean {sum(warm) / len(warm):.1f} p90 {pct(warm, 90):.1f} ms; "
              f"prefill p90 {pct(warm_prefill, 90):.1f} ms, over 100 ms "
              f"{sum(1 for x in warm_prefill if x > 100)} of {len(warm_prefill)}")
    print(f"  queue p50 {pct([s['queue_ms'] for s in srv], 50):.2f}, prefill p50 "
          f"{pct([s['prefill_ms'] for s in srv], 50):.1f}, transfer p50 "
          f"{pct([s['transfer_ms'] for s in srv], 50):.1f} p90 "
          f"{pct([s['transfer_ms'] for s in srv], 90):.1f} ms")
    print(f"  transfer / TTFT p50 {100 * pct(share, 50):.2f}% p90 {100 * pct(share, 90):.2f}%")
    print(f"  TPOT client p50 {pct(tpot, 50):.2f} p99 {pct(tpot, 99):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
