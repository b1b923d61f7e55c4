#!/bin/sh
# The runs behind docs/PERFORMANCE.md "Transfer fabric: pd-kvbench".
# usage: transfer/bench/run_kvbench.sh BUILD_DIR [OUT_DIR] [STEPS]
#   STEPS: any of "target paths sweep batch register window" (default: all)
set -eu
bin="${1:?build dir}/bin/pd-kvbench"
out="${2:-transfer/bench/results}"
steps="${3:-target paths sweep batch register window}"
mkdir -p "$out"
want() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
# 1. The targets: every transport at 256 KiB, 1 MiB and 4 MiB blocks (16 per batch),
#    checksums off and on, each beside the fastest of tag_bw, ucp_am_bw, ucp_put_bw and
#    stream_bw measured between the fabric's repeats, and memcpy of uncached data.
if want target; then
    "$bin" --transports shm,tcp,netns --block-sizes 256K,1M,4M --checksum both \
        --json "$out/target.json" --plot "$out/target.png" | tee "$out/target.txt"
fi
# 2. Data paths over TCP and the veth pair: one-sided puts (UCX emulates them over TCP)
#    against active messages, in one run.
if want paths; then
    "$bin" --transports tcp,netns --block-sizes 64K,256K,1M,4M --checksum off \
        --data-path put,am --json "$out/paths.json" | tee "$out/paths.txt"
fi
# 3. Overview: every transport, block size 4 KiB..4 MiB, checksums off and on.
if want sweep; then
    "$bin" --transports shm,tcp,netns --checksum both \
        --json "$out/sweep.json" --plot "$out/sweep.png" | tee "$out/sweep.txt"
fi
# 4. Batching on shared memory: 16 KiB vs 1 MiB blocks, coalesced or not, 4 layers.
if want batch; then
    "$bin" --transports shm --block-sizes 16K,1M --blocks 16,64 --layers 4 --checksum off \
        --coalesce both --no-perftest --json "$out/batch.json" | tee "$out/batch.txt"
fi
# 5. Caller-registered pools (malloc) instead of fabric-allocated ones, on shared memory:
#    the sender cannot map them, so the fabric sends data messages (auto), against puts.
if want register; then
    "$bin" --transports shm --block-sizes 64K,1M --blocks 16 --checksum off --register \
        --data-path put,am --no-perftest --bytes 256M --json "$out/register.json" |
        tee "$out/register.txt"
fi
# 6. Shared memory with 4 and with 16 batches in flight (a prefill worker keeps every layer
#    of a request in flight; the default window of 4 exposes each batch's wake-ups).
if want window; then
    for w in 4 16; do
        "$bin" --transports shm --block-sizes 16K,64K,256K,1M,4M --blocks 16 --checksum off \
            --no-perftest --window "$w" --json "$out/window$w.json" | tee "$out/window$w.txt"
    done
fi
