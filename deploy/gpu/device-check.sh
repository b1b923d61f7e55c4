#!/usr/bin/env bash
# The GPU check of pdkv, in one run that fits a short lease of a GPU machine (8 minutes).
#
#   deploy/gpu/device-check.sh --prepare   on a Debian 12 build machine, once: download the
#                                          .deb packages of the libraries pdkv builds against
#                                          into .gpu/debs (.gitignore), since the GPU machine
#                                          cannot reach a package registry
#   deploy/gpu/device-check.sh             on the GPU machine, from the repository root, with
#                                          .gpu/ beside it: unpack those libraries into a
#                                          private root, build with nvcc (CUDA sources for
#                                          sm_90), run the GPU tests and benchmarks, print a
#                                          short table last
#
# Logs and JSON go to $OUT when it is set (else ./device-check-out). The checks, in order:
#   1. the card, driver and nvcc, as they are (nothing on the card is changed);
#   2. kernels_test_cuda_plan, kernels_test_cuda_module, transfer_test_xfer_ipc: the
#      host-side planning, the module's lazy loading and the IPC plan and ordering (these
#      also run on every CPU machine);
#   3. kernels_test_cuda_ops: every CUDA op against the CPU backend (fresh random inputs,
#      outputs poisoned with NaN, ||gpu - cpu|| / ||cpu|| under 1e-5 for f32, 3e-3 for f16
#      and 1e-2 for bf16 weights), greedy tokens of an interleaved-RoPE (llama2.c
#      convention) f32 model equal to the CPU's for 32 tokens of 8 prompts, and batched ==
#      alone, chunked == whole bitwise on the GPU (f32 and bf16 weights);
#   4. pd-kbench --backend cuda: the device-to-device copy ceiling (events, median of 9) and
#      decode attention of 64 sequences x 4096 tokens (32/8 heads, head_dim 128, f32 KV) in
#      the same process, a copy of the same size into another process's memory by CUDA
#      IPC and a pool's KV blocks moved layer by layer into another process's pool through
#      the IPC plan and ordering of pd/xfer_ipc.h (the path between GPU workers of one
#      host; the bytes read back and compared), then the m50 preset with f32 and
#      bf16 weights;
#   5. pdctl generate --backend cuda against --backend cpu on the same model and prompt;
#   6. a cluster of GPU workers (compute.backend: cuda, 1 prefill + 1 decode on the one
#      card, KV staged through pinned host memory) against pdctl generate --backend cuda.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GPU_DIR="$ROOT/.gpu"
DEBS=(
    libucx-dev libucx0 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libnuma1
    libzmq3-dev libzmq5 libnorm1 libpgm-5.3-0 libsodium-dev libsodium23 libbsd0 libmd0
    libmsgpack-dev libmsgpackc2 libxxhash-dev libxxhash0 libyaml-dev libyaml-0-2
    libcriterion-dev libcriterion3 libnanomsg5 libgit2-1.5 libhttp-parser2.9 libffi8
    libmbedcrypto7 libmbedtls14 libmbedx509-1 libssh2-1 libgssapi-krb5-2 libkrb5-3
    libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2
    libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
    libicu-dev libicu72 icu-devtools libjansson-dev libjansson4 libmicrohttpd-dev libmicrohttpd12
    libcurl4-openssl-dev libcurl4 libnghttp2-14 librtmp1 libpsl5 libldap-2.5-0 libbrotli1
    libsasl2-2 libsasl2-modules-db
    pkgconf pkgconf-bin libpkgconf3
)

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$GPU_DIR/debs"
    (cd "$GPU_DIR/debs" && apt-get download "${DEBS[@]}") || exit 1
    du -sh "$GPU_DIR/debs"
    echo "device-check: carry .gpu with the run (run's carry: [\".gpu\"])"
    exit 0
fi

OUT_DIR=${OUT:-$ROOT/device-check-out}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/device-check.log"
: >"$LOG"
T_START=$(date +%s)
declare -a ROWS=()
row() { ROWS+=("$(printf '%-46s %s' "$1" "$2")"); }
say() { echo "== $*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - T_START)); }

say "1. device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee -a "$LOG"
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
row "card" "${CARD:-none found}"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
"$NVCC" --version | tail -2 | tee -a "$LOG"

say "build (libraries from .gpu/debs, nvcc for sm_90)"
PDROOT=/tmp/pdroot
if [[ -d "$GPU_DIR/debs" ]]; then
    rm -rf "$PDROOT" && mkdir -p "$PDROOT"
    for f in "$GPU_DIR"/debs/*.deb; do dpkg -x "$f" "$PDROOT"; done
    # Prefer the machine's own copy of any library it already has.
    LIBDIR="$PDROOT/usr/lib/x86_64-linux-gnu"
    for so in "$LIBDIR"/*.so.*; do
        [[ -e "$so" ]] || continue
        name=$(basename "$so")
        if ldconfig -p | grep -q " $name "; then rm -f "$so"; fi
    done
    export PKG_CONFIG_SYSROOT_DIR=$PDROOT
    export PKG_CONFIG_LIBDIR=$LIBDIR/pkgconfig:$PDROOT/usr/share/pkgconfig
    export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PATH=$PDROOT/usr/bin:$PATH
    export PKG_CONFIG=$(command -v pkg-config || echo "$PDROOT/usr/bin/pkgconf")
    # The .pc files name their static-only dependencies (Requires.private: krb5-gssapi,
    # openpgm, norm, ...); a shared build never reads them, so absent ones get an empty
    # stand-in rather than their -dev packages.
    for pass in 1 2 3 4 5; do
        missing=$("$PKG_CONFIG" --print-errors --exists libzmq msgpack ucx libxxhash yaml-0.1 \
            libsodium criterion libpcre2-8 icu-uc libcurl jansson libmicrohttpd 2>&1 | sed -nE "s/.*Package '([^']+)', required by.*/\1/p" | sort -u)
        [[ -z "$missing" ]] && break
        for m in $missing; do
            printf 'Name: %s\nDescription: stand-in (shared build)\nVersion: 999\n' "$m" \
                >"$LIBDIR/pkgconfig/$m.pc"
            echo "device-check: $m: empty stand-in .pc (only static links need it)" >>"$LOG"
        done
    done
else
    echo "device-check: no .gpu/debs (run --prepare on the build machine and carry .gpu)" | tee -a "$LOG"
fi
BUILD="$ROOT/build-gpu"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
if ! cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DPD_CUDA_ARCHITECTURES=90 \
    -DPKG_CONFIG_EXECUTABLE="${PKG_CONFIG:-pkg-config}" >>"$LOG" 2>&1; then
    row "configure" "FAILED (see device-check.log)"
    tail -30 "$LOG"
fi
if cmake --build "$BUILD" -j"$(nproc)" --target kernels_test_cuda_plan kernels_test_cuda_ops \
    kernels_test_cuda_module transfer_test_xfer_ipc pd-kbench pdctl pd-router pd-prefill \
    pd-decode >>"$LOG" 2>&1; then
    row "build with nvcc (sm_90)" "ok in $(elapsed) s"
else
    row "build with nvcc (sm_90)" "FAILED (see device-check.log)"
    grep -E "error|Error" "$LOG" | head -20
fi
grep -q "pdkv: CUDA ON" "$LOG" || row "CUDA in the build" "NOT FOUND by CMake"
[[ -f "$BUILD/lib/libpdkv-cuda.so" ]] || row "CUDA module lib/libpdkv-cuda.so" "NOT BUILT"
BIN="$BUILD/bin"

say "2-3. tests"
for t in kernels_test_cuda_plan kernels_test_cuda_module transfer_test_xfer_ipc kernels_test_cuda_ops; do
    if [[ -x "$BIN/$t" ]]; then
        timeout 240 "$BIN/$t" --verbose --jobs 1 >"$OUT_DIR/$t.log" 2>&1
        rc=$?
        grep -E "^\[(PASS|FAIL|SKIP|----|ERR )" "$OUT_DIR/$t.log" | sed 's/^/  /' | tee -a "$LOG"
        while read -r line; do
            name=$(sed -E 's/^\[(PASS|FAIL|SKIP)\] ([^:]+::[^:]+).*/\2/' <<<"$line")
            verdict=$(sed -E 's/^\[(PASS|FAIL|SKIP)\].*/\1/' <<<"$line")
            row "$name" "$verdict"
        done < <(grep -E "^\[(PASS|FAIL|SKIP)\]" "$OUT_DIR/$t.log")
        grep -q "Crashing: [1-9]" "$OUT_DIR/$t.log" && row "$t" "CRASHED (rc $rc)"
        [[ $rc -eq 124 ]] && row "$t" "TIMED OUT"
    else
        row "$t" "not built"
    fi
done

say "4. pd-kbench --backend cuda"
if [[ -x "$BIN/pd-kbench" ]]; then
    for w in f32 bf16; do
        timeout 120 "$BIN/pd-kbench" --backend cuda --cuda-weights $w --preset m50 --prompt 1024 \
            --decode 64 --batch 64 --memcpy-mib 2048 --json >"$OUT_DIR/kbench-$w.json" \
            2>>"$LOG"
        cat "$OUT_DIR/kbench-$w.json" | tee -a "$LOG"
    done
    python3 - "$OUT_DIR/kbench-f32.json" "$OUT_DIR/kbench-bf16.json" >>"$OUT_DIR/rows.txt" <<'PY'
import json, sys
for path in sys.argv[1:]:
    try:
        lines = [json.loads(l) for l in open(path) if l.strip()]
    except Exception as e:
        print(f"{path.split('/')[-1]:46s} unreadable ({e})")
        continue
    w = path.split('-')[-1].split('.')[0]
    for j in lines:
        if 'attention' in j and w == 'f32':
            a = j['attention']
            print(f"{'device-to-device copy (read + write)':46s} {j['gpu_copy_gbps']:.0f} GB/s")
            print(f"{'decode attention 64 x 4K (target >= 70%)':46s} {a['ms']:.3f} ms, "
                  f"{a['gbps']:.0f} GB/s = {100 * a['vs_copy']:.0f}% of the copy")
            if 'ipc_copy_gbps' in j:
                print(f"{'copy into another process by IPC (>= 70%)':46s} "
                      f"{j['ipc_copy_gbps']:.0f} GB/s = {100 * j['ipc_vs_copy']:.0f}% of the copy")
            if 'kv_ipc' in j:
                k = j['kv_ipc']
                print(f"{'KV blocks by IPC, layer-wise (>= 70%)':46s} {k['blocks']} x {k['layers']} "
                      f"in {k['ms']:.2f} ms, {k['gbps']:.0f} GB/s = {100 * k['vs_copy']:.0f}% of the copy")
        for r in j.get('runs', []):
            print(f"{'m50 ' + w + ' decode / prefill / batch 64':46s} {r['decode_tok_s']:.0f} tok/s "
                  f"({100 * r['decode_vs_bound']:.0f}% of bound) / {r['prefill_tok_s']:.0f} tok/s / "
                  f"{r['batch_tok_s']:.0f} tok/s")
PY
else
    row "pd-kbench" "not built"
fi

say "5. pdctl generate --backend cuda vs cpu"
if [[ -x "$BIN/pdctl" ]]; then
    M=/tmp/pd-devcheck-m50
    "$BIN/pdctl" model new --preset m50 --seed 1 -o "$M" --force >>"$LOG" 2>&1
    "$BIN/pdctl" generate -m "$M" -p "Once upon a time" -n 32 --temperature 0 --json \
        >"$OUT_DIR/gen-cpu.json" 2>>"$LOG"
    "$BIN/pdctl" generate -m "$M" -p "Once upon a time" -n 32 --temperature 0 --json \
        --backend cuda >"$OUT_DIR/gen-cuda.json" 2>>"$LOG"
    if python3 -c "import json,sys; a=json.load(open(sys.argv[1]))['tokens']; b=json.load(open(sys.argv[2]))['tokens']; sys.exit(0 if a==b and len(a)==32 else 1)" \
        "$OUT_DIR/gen-cpu.json" "$OUT_DIR/gen-cuda.json" 2>>"$LOG"; then
        row "pdctl generate: 32 greedy tokens cuda == cpu" "yes"
    else
        row "pdctl generate: 32 greedy tokens cuda == cpu" "NO (gen-*.json)"
    fi
else
    row "pdctl" "not built"
fi
say "6. GPU cluster vs pdctl generate --backend cuda"
if [[ -x "$BIN/pdctl" && -x "$BIN/pd-decode" && -d "${M:-}" ]]; then
    MF="$OUT_DIR/gpu-cluster.yaml"
    RUN="$OUT_DIR/run"
    cat >"$MF" <<YAML
name: gpucheck
model:
  path: $M
compute:
  backend: cuda
network:
  host: 127.0.0.1
  base_port: 27100
router:
  policy: kv
  min_cached_prefix: 32
prefill:
  count: 1
  threads: 1
  pool_mb: 512
decode:
  count: 1
  threads: 1
  pool_mb: 512
  max_batch: 16
transfer:
  backend: ucx
  checksum: true
  layerwise: true
YAML
    if PD_RUN_DIR="$RUN" PD_BIN_DIR="$BIN" timeout 120 "$BIN/pdctl" up -d "$MF" \
        --ready-timeout 90 >>"$LOG" 2>&1; then
        ok=yes
        for p in "Once upon a time" "The quick brown fox jumps over the lazy dog"; do
            c=$(timeout 60 "$BIN/pdctl" submit -r tcp://127.0.0.1:27100 -p "$p" -n 32 \
                --temperature 0 --json 2>>"$LOG" | grep -o '"tokens":\[[0-9,]*\]')
            s=$("$BIN/pdctl" generate -m "$M" -p "$p" -n 32 --temperature 0 --json \
                --backend cuda 2>>"$LOG" | grep -o '"tokens":\[[0-9,]*\]' | tail -n 1)
            echo "cluster $c / generate $s" >>"$LOG"
            [[ -n "$c" && "$c" == "$s" ]] || ok="NO (see device-check.log)"
        done
        row "GPU cluster == pdctl generate --backend cuda" "$ok"
        PD_RUN_DIR="$RUN" PD_BIN_DIR="$BIN" "$BIN/pdctl" down "$MF" >>"$LOG" 2>&1
    else
        row "GPU cluster == pdctl generate --backend cuda" "cluster did not start (see log)"
        tail -n 20 "$RUN"/*.log >>"$LOG" 2>&1
        PD_RUN_DIR="$RUN" PD_BIN_DIR="$BIN" "$BIN/pdctl" down "$MF" >>"$LOG" 2>&1
    fi
else
    row "GPU cluster == pdctl generate --backend cuda" "not built"
fi
row "KV between GPU workers by CUDA IPC in a cluster" "not wired yet (staged through host)"
row "total time" "$(elapsed) s"

echo
echo "================ pdkv device check (${CARD:-no card}) ================"
printf '%s\n' "${ROWS[@]}"
[[ -f "$OUT_DIR/rows.txt" ]] && cat "$OUT_DIR/rows.txt"
