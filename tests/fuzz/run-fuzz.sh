#!/usr/bin/env bash
# Build the fuzz targets with clang, libFuzzer, ASan and UBSan, and run each for a set time.
#
#   tests/fuzz/run-fuzz.sh SECONDS [NAME...]     # NAME: proto, safetensors, ... (default all)
#
# Each target starts from its seeds (tests/fuzz/corpus/NAME, and the protocol samples for
# proto) in a working corpus under $OUT, so the repository's corpus only changes when
# someone copies a minimized crasher into it. Prints one line per target: executions,
# executions per wall second, wall and CPU seconds, corpus size at the start and the end,
# crashes (any sanitizer report, leak, timeout or out-of-memory leaves a file in
# $OUT/crashes). Exit status 1 when any target
# crashed, 77 when clang or libFuzzer is missing (deploy/install-deps.sh installs them).
#
# Environment: OUT (default .pdkv/fuzz/<date>), BUILD (default build-fuzz), JOBS (targets
# run at once, default 1), NICE (default 15).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ALL=(proto safetensors llama2c tokenizer_bin tokenizer_json chat_template manifest gateway_body)
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ || $1 -lt 1 ]]; then
    echo "usage: tests/fuzz/run-fuzz.sh SECONDS [NAME...]  (NAME: ${ALL[*]})" >&2
    exit 2
fi
SECONDS_EACH=$1
shift
NAMES=("$@")
[[ ${#NAMES[@]} -gt 0 ]] || NAMES=("${ALL[@]}")
for n in "${NAMES[@]}"; do
    [[ " ${ALL[*]} " == *" $n "* ]] || { echo "run-fuzz: unknown target '$n' (${ALL[*]})" >&2; exit 2; }
done
OUT=${OUT:-$ROOT/.pdkv/fuzz/$(date -u +%Y%m%d-%H%M%S)}
BUILD=${BUILD:-$ROOT/build-fuzz}
JOBS=${JOBS:-1}
NICE=${NICE:-15}

CC_BIN=$(command -v clang || true)
if [[ -z $CC_BIN ]]; then
    echo "run-fuzz: SKIP: clang is not installed (deploy/install-deps.sh)" >&2
    exit 77
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
    "$CC_BIN" -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
    echo "run-fuzz: SKIP: $CC_BIN cannot link -fsanitize=fuzzer (libFuzzer missing)" >&2
    exit 77
fi

mkdir -p "$OUT/crashes" "$OUT/logs"
echo "run-fuzz: building in $BUILD (clang, libFuzzer, ASan, UBSan)" >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_BUILD_TYPE=Release \
    -DPD_FUZZ=ON -DPD_SANITIZE="address;undefined" -DPD_WITH_CUDA=OFF -DPD_NATIVE=OFF \
    -DCMAKE_C_FLAGS="-fno-sanitize-recover=undefined -g" >"$OUT/logs/cmake.log" 2>&1 ||
    { tail -20 "$OUT/logs/cmake.log" >&2; exit 1; }
targets=()
for n in "${NAMES[@]}"; do
    targets+=("pd-fuzz-$n")
done
[[ " ${NAMES[*]} " == *" proto "* ]] && targets+=(fuzz_proto)
nice -n "$NICE" cmake --build "$BUILD" -j2 --target "${targets[@]}" >"$OUT/logs/build.log" 2>&1 ||
    { grep -E 'error|Error' "$OUT/logs/build.log" | head -20 >&2; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -1)
[[ -n $dirty ]] && commit="$commit+changes"

run_one() {
    local n=$1 corpus=$OUT/corpus/$1
    mkdir -p "$corpus"
    if [[ -d $ROOT/tests/fuzz/corpus/$n ]]; then
        cp "$ROOT/tests/fuzz/corpus/$n"/* "$corpus"/
    fi
    if [[ $n == proto ]]; then
        "$BUILD/bin/fuzz_proto" --write-corpus "$corpus"
    fi
    local seeds
    seeds=$(find "$corpus" -type f | wc -l)
    local t0 t1
    t0=$(date +%s.%N)
    # CPU seconds beside wall seconds: on a shared machine a niced fuzzer may get little.
    # -timeout is wall time: 60 s, because a niced process on a loaded machine can wait
    # 10 s for the CPU (an input that runs in milliseconds was once reported at 13 s).
    {
        TIMEFORMAT='%U %S'
        time nice -n "$NICE" "$BUILD/bin/pd-fuzz-$n" -max_total_time="$SECONDS_EACH" \
            -timeout=60 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
            -artifact_prefix="$OUT/crashes/$n-" "$corpus" >"$OUT/logs/$n.log" 2>&1
    } 2>"$OUT/logs/$n.time" || true
    t1=$(date +%s.%N)
    local cpu
    cpu=$(awk '{print $1 + $2}' "$OUT/logs/$n.time" 2>/dev/null)
    local execs crashes size
    execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$OUT/logs/$n.log" | tail -1)
    execs=${execs:-0}
    crashes=$(find "$OUT/crashes" -name "$n-*" -type f | wc -l)
    size=$(find "$corpus" -type f | wc -l)
    awk -v n="$n" -v e="$execs" -v t0="$t0" -v t1="$t1" -v s="$size" -v seeds="$seeds" \
        -v c="$crashes" -v commit="$commit" -v cpu="${cpu:-0}" 'BEGIN {
            f = "%-15s %11d execs %7.0f exec/s %5.0f s wall %5.0f s CPU (%7.0f exec/CPU-s)"
            f = f "  corpus %d -> %d  crashes %d  (%s)\n"
            printf f, n, e, e / (t1 - t0), t1 - t0, cpu, (cpu > 0 ? e / cpu : 0), seeds, s, c, commit
        }' | tee -a "$OUT/summary.txt"
    if ((crashes > 0)); then
        grep -m3 -E 'ERROR: |runtime error|SUMMARY' "$OUT/logs/$n.log" | sed 's/^/    /' |
            tee -a "$OUT/summary.txt"
    fi
}

echo "run-fuzz: ${#NAMES[@]} target(s), ${SECONDS_EACH}s each, $JOBS at a time; results in $OUT" >&2
running=0
for n in "${NAMES[@]}"; do
    run_one "$n" &
    running=$((running + 1))
    if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
if [[ -n $(find "$OUT/crashes" -type f) ]]; then
    echo "run-fuzz: crashes in $OUT/crashes (reproduce: $BUILD/bin/pd-fuzz-NAME FILE)" >&2
    exit 1
fi
