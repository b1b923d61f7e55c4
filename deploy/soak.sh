#!/usr/bin/env bash
# Soak: a cluster under steady load with a random fault every minute, every request
# accounted for and the memory of every role sampled over time.
#
#   deploy/soak.sh --minutes 60                 # the hour-long run of docs/RELIABILITY.md
#   deploy/soak.sh --minutes 3 --fault-every 40 # the CI version (ctest -L soak)
#
# What it does:
#   1. brings up MANIFEST (default deploy/2p2d.yaml) with `pdctl up -d` on free loopback
#      ports, with the small preset;
#   2. measures the cluster's capacity with a saturating `pdctl bench` (completed requests
#      per second) and sets the load to LOAD_PCT (default 80) % of it;
#   3. for --minutes, starts one `pdctl bench` of one minute of Poisson arrivals at that
#      rate every minute (so a stalled minute never holds back the next), and injects a
#      random fault every --fault-every seconds: kill -9 of a prefill or decode worker
#      (relaunched a few seconds later with its own command line, as a supervisor would),
#      SIGSTOP then SIGCONT of one after 2-10 s, and with --router-faults kill -9 and
#      relaunch of the router;
#   4. samples the RSS of every role every 5 s into rss.csv;
#   5. waits for every bench to end and writes summary.txt: requests sent, completed,
#      errors by kind, hung (no terminal reply within --timeout-ms: the client gave up),
#      faults injected, RSS per role at the start and the end.
#
# Exit status: 0 when no request hung, every request was answered (completed or an error
# reply), no role died that the soak did not kill, and requests completed after the last
# fault; 1 otherwise; 2 for bad usage; 77 when something it needs is missing (the reason
# is printed), so that ctest marks the test skipped.
#
# Options:
#   --minutes N         how long the load and the faults last (default 60)
#   --fault-every S     seconds between faults (default 60; the first comes after S)
#   --router-faults     also kill -9 and relaunch the router
#   --faults LIST       the kinds to draw from, comma-separated: kill9, stop, router
#                       (default kill9,stop; kill9,stop,router with --router-faults)
#   --timeout-ms MS     a request with no terminal reply this long after its send is hung
#                       (default 150000: past the router's 120 s request deadline)
#   --out DIR           results (default .pdkv/soak/<date>)
# Environment: PD_BIN_DIR (default build/bin), MANIFEST, PRESET (default small),
# MODEL_DIR, LOAD_PCT (default 80), SEED (default 1).
set -uo pipefail
# The whole script is one brace group, which bash reads entirely before running it: a run
# of an hour is not disturbed by an edit of this file (or a checkout) while it runs.
{

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PD_BIN_DIR:-$ROOT/build/bin}
PDCTL=$BIN/pdctl
MANIFEST=${MANIFEST:-$ROOT/deploy/2p2d.yaml}
PRESET=${PRESET:-small}
MODEL_DIR=${MODEL_DIR:-$ROOT/.pdkv/models/$PRESET}
LOAD_PCT=${LOAD_PCT:-80}
SEED=${SEED:-1}
MINUTES=60
FAULT_EVERY=60
ROUTER_FAULTS=0
FAULT_KINDS=""
TIMEOUT_MS=150000
OUT=""

usage() {
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --minutes) MINUTES=${2:-}; shift 2 ;;
    --fault-every) FAULT_EVERY=${2:-}; shift 2 ;;
    --router-faults) ROUTER_FAULTS=1; shift ;;
    --faults) FAULT_KINDS=${2:-}; shift 2 ;;
    --timeout-ms) TIMEOUT_MS=${2:-}; shift 2 ;;
    --out) OUT=${2:-}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "soak: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in MINUTES FAULT_EVERY TIMEOUT_MS LOAD_PCT; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} < 1)); then
        echo "soak: $v wants a positive whole number, not '${!v}'" >&2
        exit 2
    fi
done
OUT=${OUT:-$ROOT/.pdkv/soak/$(date -u +%Y%m%d-%H%M%S)}
if [[ -z $FAULT_KINDS ]]; then
    FAULT_KINDS=kill9,stop
    ((ROUTER_FAULTS)) && FAULT_KINDS+=,router
fi
IFS=, read -r -a KINDS <<<"$FAULT_KINDS"
for k in "${KINDS[@]}"; do
    [[ $k == kill9 || $k == stop || $k == router ]] ||
        { echo "soak: --faults: unknown kind '$k' (kill9, stop, router)" >&2; exit 2; }
done

skip() {
    echo "soak: SKIP: $*" >&2
    exit 77
}
[[ -x $PDCTL ]] || skip "$PDCTL not found (build first, or set PD_BIN_DIR)"
for t in python3 ss; do
    command -v "$t" >/dev/null || skip "$t is not installed (deploy/install-deps.sh)"
done
[[ -r /proc/self/status ]] || skip "no /proc to sample RSS from"

# A rerun into the same directory starts afresh (ctest reuses one).
rm -rf "$OUT/run" "$OUT/bench" "$OUT"/argv-*
mkdir -p "$OUT/run" "$OUT/bench"
export PD_RUN_DIR=$OUT/run PD_BIN_DIR=$BIN
LOG=$OUT/soak.log
: >"$LOG"
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$LOG" >&2; }

# shellcheck source=deploy/bench/ports.sh
source "$ROOT/deploy/bench/ports.sh"
PORT=$(pick_port $((21000 + (RANDOM % 40) * 50)) 31000)
[[ -n $PORT ]] || { echo "soak: no free port range" >&2; exit 1; }
SETS=(--set network.base_port="$PORT" --set model.path="$MODEL_DIR"
    --set model.preset="$PRESET")
NAME=$(awk '/^name:/ {print $2; exit}' "$MANIFEST")
STATE=$OUT/run/$NAME-$PORT.state

BENCH_PIDS=()
STOPPED=""
cleanup() {
    local j
    [[ -n $STOPPED ]] && kill -CONT "$STOPPED" 2>/dev/null
    for j in "${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}"; do
        kill -INT "$j" 2>/dev/null
    done
    [[ -n ${RSS_PID:-} ]] && kill "$RSS_PID" 2>/dev/null
    if [[ -f $STATE ]]; then
        "$PDCTL" down "$MANIFEST" "${SETS[@]}" >>"$LOG" 2>&1
    fi
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "soak: $MANIFEST ($PRESET) on 127.0.0.1:$PORT for $MINUTES min, a fault every" \
    "${FAULT_EVERY}s, results in $OUT"
log "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! "$PDCTL" up -d "$MANIFEST" "${SETS[@]}" >>"$LOG" 2>&1; then
    log "soak: pdctl up failed (see $LOG)"
    exit 1
fi

# Roles: name -> pid, from the state file that pdctl up wrote ("proc PID NAME NS").
declare -A PID
read_state() {
    local tag pid name rest
    while read -r tag pid name rest; do
        [[ $tag == proc ]] && PID[$name]=$pid
    done <"$STATE"
}
read_state
ROLES=("${!PID[@]}")
if [[ ${#ROLES[@]} -lt 2 || -z ${PID[router]:-} ]]; then
    log "soak: no router and workers in $STATE"
    exit 1
fi
log "roles: $(for r in "${ROLES[@]}"; do printf '%s=%s ' "$r" "${PID[$r]}"; done)"

# RSS sampler: every 5 s, one line per role (a role being relaunched is skipped).
echo "t_s,role,pid,rss_kb" >"$OUT/rss.csv"
T0=$(date +%s)
(
    while sleep 5; do
        [[ -f $STATE ]] || continue
        now=$(($(date +%s) - T0))
        while read -r tag pid name rest; do
            [[ $tag == proc ]] || continue
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
            [[ -n $rss ]] && echo "$now,$name,$pid,$rss"
        done <"$STATE"
    done >>"$OUT/rss.csv"
) &
RSS_PID=$!

# Capacity: a saturating closed-ish load (32 in flight), completed requests per second.
WORKLOAD=(--prompt-len 32:256 --max-tokens 8:48)
log "capacity: pdctl bench -N 96 -c 32 ${WORKLOAD[*]}"
"$PDCTL" bench -q -r "127.0.0.1:$PORT" -w 30 -N 96 -c 32 "${WORKLOAD[@]}" --seed "$SEED" \
    --json "$OUT/capacity.json" >"$OUT/capacity.txt" 2>&1
CAP=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["completed"]/s["duration_s"] if s["duration_s"] else 0)' "$OUT/capacity.json" 2>/dev/null)
if ! python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "${CAP:-0}"; then
    log "soak: the capacity run completed nothing (see $OUT/capacity.txt)"
    exit 1
fi
RATE=$(python3 -c "print(round(float('$CAP') * $LOAD_PCT / 100, 3))")
PER_MIN=$(python3 -c "import math; print(max(1, math.ceil(float('$RATE') * 60)))")
log "capacity $(printf '%.2f' "$CAP") req/s; load $RATE req/s ($LOAD_PCT%), $PER_MIN per minute"
sleep 2 # the capacity run's RSS peak is not the soak's start
START_RSS_AT=$(($(date +%s) - T0))

# Relaunch a role from its saved command line, environment and working directory, its
# output appended to its log; the state file gets the new pid (pdctl down stops it).
relaunch() {
    local name=$1 dir=$OUT/argv-$1 old=${PID[$1]}
    (
        cd "$(cat "$dir/cwd")" || exit 1
        mapfile -d '' -t argv <"$dir/cmdline"
        mapfile -d '' -t envv <"$dir/environ"
        exec setsid env -i "${envv[@]}" "${argv[@]}" </dev/null \
            >>"$OUT/run/$NAME-$name.log" 2>&1
    ) &
    local new=$!
    disown "$new" 2>/dev/null
    PID[$name]=$new
    sed -i "s/^proc $old $name /proc $new $name /" "$STATE"
    log "relaunched $name: pid $new"
}
save_argv() {
    local name=$1 pid=${PID[$1]} dir=$OUT/argv-$1
    mkdir -p "$dir"
    cat "/proc/$pid/cmdline" >"$dir/cmdline" && cat "/proc/$pid/environ" >"$dir/environ" &&
        readlink "/proc/$pid/cwd" >"$dir/cwd"
}
for r in "${ROLES[@]}"; do
    save_argv "$r" || { log "soak: cannot read /proc of $r"; exit 1; }
done

alive() { kill -0 "${PID[$1]}" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/${PID[$1]}/status" 2>/dev/null; }

: >"$OUT/faults.txt"
N_FAULTS=0
UNEXPECTED_DEATHS=0
LAST_FAULT_S=0
fault() {
    local workers=() r
    for r in "${ROLES[@]}"; do
        [[ $r == router ]] || workers+=("$r")
    done
    local kind=${KINDS[RANDOM % ${#KINDS[@]}]} victim=${workers[RANDOM % ${#workers[@]}]}
    local t=$(($(date +%s) - T0))
    case $kind in
    kill9)
        log "fault $((N_FAULTS + 1)): kill -9 $victim (pid ${PID[$victim]})"
        kill -9 "${PID[$victim]}"
        sleep $((2 + RANDOM % 4))
        relaunch "$victim"
        ;;
    stop)
        local secs=$((2 + RANDOM % 9))
        log "fault $((N_FAULTS + 1)): SIGSTOP $victim (pid ${PID[$victim]}) for ${secs}s"
        STOPPED=${PID[$victim]}
        kill -STOP "$STOPPED"
        sleep "$secs"
        kill -CONT "$STOPPED"
        STOPPED=""
        victim="$victim ${secs}s"
        ;;
    router)
        victim=router
        log "fault $((N_FAULTS + 1)): kill -9 router (pid ${PID[router]})"
        kill -9 "${PID[router]}"
        sleep 1
        relaunch router
        ;;
    esac
    N_FAULTS=$((N_FAULTS + 1))
    LAST_FAULT_S=$(($(date +%s) - T0))
    echo "$t $kind $victim" >>"$OUT/faults.txt"
}

# The load: one bench of one minute's arrivals per minute, each with its own seed.
END=$(($(date +%s) + MINUTES * 60))
NEXT_BENCH=$(date +%s)
NEXT_FAULT=$(($(date +%s) + FAULT_EVERY))
MINUTE=0
while (($(date +%s) < END)); do
    now=$(date +%s)
    if ((now >= NEXT_BENCH && NEXT_BENCH < END)); then
        MINUTE=$((MINUTE + 1))
        "$PDCTL" bench -q -r "127.0.0.1:$PORT" -w 30 -N "$PER_MIN" --rate "$RATE" \
            "${WORKLOAD[@]}" --seed $((SEED * 100000 + MINUTE)) --timeout-ms "$TIMEOUT_MS" \
            --json "$OUT/bench/minute-$(printf '%03d' $MINUTE).json" \
            >"$OUT/bench/minute-$(printf '%03d' $MINUTE).txt" 2>&1 &
        BENCH_PIDS+=($!)
        echo "$MINUTE $now" >>"$OUT/bench/starts.txt"
        NEXT_BENCH=$((NEXT_BENCH + 60))
    fi
    if ((now >= NEXT_FAULT && now + 10 < END)); then
        fault
        NEXT_FAULT=$((NEXT_FAULT + FAULT_EVERY))
    fi
    for r in "${ROLES[@]}"; do
        if ! alive "$r"; then
            log "soak: $r (pid ${PID[$r]}) died without a fault: relaunching it"
            UNEXPECTED_DEATHS=$((UNEXPECTED_DEATHS + 1))
            relaunch "$r"
        fi
    done
    sleep 1
done
log "load done after $MINUTE minute(s); waiting for the last requests (at most $((TIMEOUT_MS / 1000 + 40)) s)"
# Poll rather than wait: bash may have reaped a bench already (wait then refuses its pid).
for j in "${BENCH_PIDS[@]}"; do
    while kill -0 "$j" 2>/dev/null; do
        sleep 1
    done
done
BENCH_PIDS=()
sleep 6 # one more RSS sample at the end
END_RSS_AT=$(($(date +%s) - T0))
for r in "${ROLES[@]}"; do
    if ! alive "$r"; then
        log "soak: $r (pid ${PID[$r]}) is not running at the end"
        UNEXPECTED_DEATHS=$((UNEXPECTED_DEATHS + 1))
    fi
done
kill "$RSS_PID" 2>/dev/null
wait "$RSS_PID" 2>/dev/null
RSS_PID=""

python3 - "$OUT" "$START_RSS_AT" "$END_RSS_AT" "$N_FAULTS" "$UNEXPECTED_DEATHS" \
    "$LAST_FAULT_S" "$T0" "$CAP" "$RATE" "$MINUTES" <<'EOF'
import csv, glob, json, os, sys
from collections import Counter, defaultdict

out, start_at, end_at, n_faults, deaths, last_fault, t0, cap, rate, minutes = sys.argv[1:]
start_at, end_at, last_fault, t0 = int(start_at), int(end_at), int(last_fault), int(t0)
sent = completed = not_sent = missing = 0
kinds = Counter()
hung = []
done_after_last_fault = 0
e2e = []
starts = {}
with open(os.path.join(out, "bench", "starts.txt")) as f:
    for line in f:
        m, t = line.split()
        starts[int(m)] = int(t)
for path in sorted(glob.glob(os.path.join(out, "bench", "minute-*.json"))):
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        missing += 1
        print(f"soak: {path}: no complete JSON (the bench did not finish)")
        continue
    minute = int(os.path.basename(path)[7:10])
    base = starts.get(minute, 0)
    for r in d["requests"]:
        if not r["sent"]:
            not_sent += 1
            continue
        sent += 1
        if r["status"] == "done":
            completed += 1
            e2e.append(r["e2e_ms"])
        elif r["status"] == "error":
            if "(client)" in (r.get("message") or ""):
                hung.append((path, r["index"]))
                kinds["hung"] += 1
            else:
                kinds[r["error"]] += 1
    # Requests sent after the last fault that completed: the cluster recovered.
    done_after_last_fault += sum(1 for r in d["requests"] if r["status"] == "done"
                                 and base + r["send_ms"] / 1000 - t0 > last_fault)

rss = defaultdict(list)
with open(os.path.join(out, "rss.csv")) as f:
    for row in csv.DictReader(f):
        rss[row["role"]].append((int(row["t_s"]), int(row["rss_kb"])))

def at(samples, t, first):
    pick = [s for s in samples if (s[0] >= t if first else s[0] <= t)]
    if not pick:
        return None
    return (pick[0] if first else pick[-1])[1]

e2e.sort()
lines = []
lines.append(f"capacity {float(cap):.2f} req/s, load {rate} req/s, {minutes} min")
lines.append(f"requests sent {sent}, completed {completed}, errors {sum(kinds.values()) - kinds['hung']}, hung {kinds['hung']}, not sent {not_sent}")
lines.append("errors by kind: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items()) if k != "hung") or "none"))
if e2e:
    p = lambda q: e2e[min(len(e2e) - 1, int(q * len(e2e)))]
    lines.append(f"e2e ms p50 {p(0.5):.0f}, p99 {p(0.99):.0f}, max {e2e[-1]:.0f}")
faults = Counter()
with open(os.path.join(out, "faults.txt")) as f:
    for line in f:
        faults[line.split()[1]] += 1
lines.append(f"faults injected {n_faults}: " + (", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"))
lines.append(f"roles that died without a fault or were down at the end: {deaths}")
lines.append(f"benches without a result: {missing}")
lines.append("RSS (MiB) per role, start -> end (max):")
for role in sorted(rss):
    s, e = at(rss[role], start_at, True), at(rss[role], end_at, False)
    mx = max(v for _, v in rss[role])
    fmt = lambda v: "-" if v is None else f"{v / 1024:.1f}"
    lines.append(f"  {role:12s} {fmt(s)} -> {fmt(e)} (max {fmt(mx)})")
ok = (not hung and missing == 0 and int(deaths) == 0 and sent > 0
      and (int(n_faults) == 0 or done_after_last_fault > 0))
lines.append("result: " + ("PASS" if ok else "FAIL"))
for path, idx in hung[:20]:
    lines.append(f"  hung: {path} request {idx}")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.txt"), "w").write(text)
print(text, end="")
sys.exit(0 if ok else 1)
EOF
rc=$?
log "summary in $OUT/summary.txt, RSS over time in $OUT/rss.csv"
exit $rc
}
