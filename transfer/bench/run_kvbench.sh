#!/bin/sh
# The runs behind docs/PERFORMANCE.md "Transfer fabric: pd-kvbench".
# usage: transfer/bench/run_kvbench.sh BUILD_DIR [OUT_DIR]
set -eu
bin="${1:?build dir}/bin/pd-kvbench"
out="${2:-transfer/bench/results}"
mkdir -p "$out"
# 1. Overview: every transport, block size 4 KiB..4 MiB, 16 blocks per batch, checksums off
#    and on, ucx_perftest (ucp_put_bw) beside each size, memcpy of uncached data.
"$bin" --transports shm,tcp,netns --checksum both \
    --json "$out/sweep.json" --plot "$out/sweep.png" | tee "$out/sweep.txt"
# 2. TCP against ucx_perftest at 256 KiB and above: one block per batch (a put of exactly
#    the perftest size) and 16.
"$bin" --transports tcp --block-sizes 256K,1M,4M --blocks 1,16 --checksum off \
    --json "$out/tcp.json" | tee "$out/tcp.txt"
# 3. Batching on shared memory: 16 KiB vs 1 MiB blocks, coalesced or not, 4 layers.
"$bin" --transports shm --block-sizes 16K,1M --blocks 16,64 --layers 4 --checksum off \
    --coalesce both --no-perftest --json "$out/batch.json" | tee "$out/batch.txt"
# 4. Caller-registered pools (malloc) instead of fabric-allocated ones, on shared memory.
"$bin" --transports shm --block-sizes 64K,1M --blocks 16 --checksum off --register \
    --no-perftest --bytes 256M --json "$out/register.json" | tee "$out/register.txt"
# 5. Shared memory with 4 and with 16 batches in flight (a prefill worker keeps every layer
#    of a request in flight; the default window of 4 exposes each batch's wake-ups).
for w in 4 16; do
    "$bin" --transports shm --block-sizes 16K,64K,256K,1M,4M --blocks 16 --checksum off \
        --no-perftest --window "$w" --json "$out/window$w.json" | tee "$out/window$w.txt"
done
