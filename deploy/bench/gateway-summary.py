#!/usr/bin/env python3
"""Summarize a gateway-bench.sh result directory: TTFT/TPOT through the router's socket
and through pd-gateway per round, the gateway's added TTFT (median over rounds of the
per-round difference), requests/s per path and the CPU share of each process."""
import json
import statistics
import sys
from pathlib import Path


def load(out, kind, path, rnd):
    with open(out / f"{kind}-{path}-{rnd}.json") as f:
        return json.load(f)["summary"]


def main():
    out = Path(sys.argv[1])
    tck = float(sys.argv[2]) if len(sys.argv) > 2 else 100.0  # clock ticks per second
    rounds = sorted({int(p.stem.split("-")[-1]) for p in out.glob("latency-router-*.json")})
    if not rounds:
        sys.exit(f"gateway-summary: no results in {out}")
    cpu = {}
    for line in (out / "cpu.txt").read_text().splitlines():
        f = line.split()
        kind, path, rnd, t0, t1 = f[0], f[1], int(f[2]), float(f[3]), float(f[4])
        # CPU seconds of each process during the run
        cpu[(kind, path, rnd)] = {f[i]: int(f[i + 1]) / tck for i in range(5, len(f), 2)}

    print("HTTP gateway against the router's socket, same cluster, alternating rounds")
    print()
    print("latency (open loop): TTFT ms p50 / p99, TPOT ms p50, errors")
    print(f"{'round':>5} {'router p50':>10} {'http p50':>9} {'added':>7} "
          f"{'router p99':>10} {'http p99':>9} {'added':>7} {'tpot r':>7} {'tpot h':>7} {'err':>4}")
    add50, add99, r50, h50, r99, h99 = [], [], [], [], [], []
    for r in rounds:
        a, b = load(out, "latency", "router", r), load(out, "latency", "http", r)
        d50 = b["ttft_ms"]["p50"] - a["ttft_ms"]["p50"]
        d99 = b["ttft_ms"]["p99"] - a["ttft_ms"]["p99"]
        add50.append(d50)
        add99.append(d99)
        r50.append(a["ttft_ms"]["p50"])
        h50.append(b["ttft_ms"]["p50"])
        r99.append(a["ttft_ms"]["p99"])
        h99.append(b["ttft_ms"]["p99"])
        print(f"{r:>5} {a['ttft_ms']['p50']:>10.2f} {b['ttft_ms']['p50']:>9.2f} {d50:>+7.2f} "
              f"{a['ttft_ms']['p99']:>10.2f} {b['ttft_ms']['p99']:>9.2f} {d99:>+7.2f} "
              f"{a['tpot_ms']['p50']:>7.2f} {b['tpot_ms']['p50']:>7.2f} "
              f"{a['errors'] + b['errors']:>4}")
    med = statistics.median
    print(f"{'med':>5} {med(r50):>10.2f} {med(h50):>9.2f} {med(add50):>+7.2f} "
          f"{med(r99):>10.2f} {med(h99):>9.2f} {med(add99):>+7.2f}")
    print()
    print(f"added TTFT (median over {len(rounds)} rounds): p50 {med(add50):+.2f} ms, "
          f"p99 {med(add99):+.2f} ms")
    print()
    print("throughput (closed loop): requests/s, and CPU ms per request of each process")
    print(f"{'round':>5} {'router':>8} {'http':>8} {'ratio':>6} {'err':>4}   "
          f"{'gw':>5} {'router':>6} {'client':>6}  (http run)   {'router':>6} {'client':>6}  (router run)")
    ratios, per_req, errors = [], {}, 0
    for r in rounds:
        a, b = load(out, "throughput", "router", r), load(out, "throughput", "http", r)
        ratio = b["requests_per_s"] / a["requests_per_s"] if a["requests_per_s"] else 0
        ratios.append(ratio)
        errors += a["errors"] + b["errors"]
        row = {}
        for path, summ in (("http", b), ("router", a)):
            c = cpu.get(("throughput", path, r), {})
            for proc in ("gateway", "router", "client"):
                v = c.get(proc, 0) / max(summ["requests"], 1) * 1e3
                row[(path, proc)] = v
                per_req.setdefault((path, proc), []).append(v)
        print(f"{r:>5} {a['requests_per_s']:>8.1f} {b['requests_per_s']:>8.1f} {ratio:>6.2f} "
              f"{a['errors'] + b['errors']:>4}   {row[('http', 'gateway')]:>5.3f} "
              f"{row[('http', 'router')]:>6.3f} {row[('http', 'client')]:>6.3f}              "
              f"{row[('router', 'router')]:>6.3f} {row[('router', 'client')]:>6.3f}")
    print()
    print(f"requests/s through the gateway / through the router socket: median {med(ratios):.2f}")
    print(f"CPU per request (median): gateway {med(per_req[('http', 'gateway')]):.3f} ms, "
          f"router {med(per_req[('http', 'router')]):.3f} ms behind the gateway and "
          f"{med(per_req[('router', 'router')]):.3f} ms direct; bench client "
          f"{med(per_req[('http', 'client')]):.3f} ms over HTTP, "
          f"{med(per_req[('router', 'client')]):.3f} ms direct")
    g = med(per_req[("http", "gateway")])
    rt = med(per_req[("http", "router")])
    if g > 0 and rt > 0:
        print(f"one core's worth: a gateway {1e3 / g:,.0f} requests/s, the router "
              f"{1e3 / rt:,.0f} requests/s")
    lat_err = sum(load(out, "latency", p, r)["errors"] for p in ("router", "http") for r in rounds)
    if errors + lat_err:
        print(f"\n{errors + lat_err} requests failed: see the JSON reports")
        sys.exit(1)

if __name__ == "__main__":
    main()
