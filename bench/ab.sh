#!/usr/bin/env bash
# CPU per call of two Sluice configurations run side by side: the same calls at the same rate
# through both at once, so that whatever the machine does during a round (other tenants, clock
# changes, steal time) weighs on both alike, and their ratio in that round is measured in the
# same seconds rather than seconds apart (bench/run.sh interleaves its systems in turn).
#
#   cargo build --release -p sluice && bash bench/ab.sh
#
# A (default bench/sluice-bench.toml) and B (default bench/sluice-bench-plugins.toml) are
# configurations as bench/run.sh takes them (listening on 127.0.100.1:5060, PBX 127.0.100.10,
# trunk 127.0.100.20, admin on 127.0.100.1:9060). Each round starts both afresh, one on
# 127.0.100.0/24 and the other on a copy of its configuration moved to 127.0.101.0/24, and the
# two swap networks from one round to the next. A SIPp caller and a SIPp answerer per network
# drive RATE calls/s for ROUND_SECONDS. CPU time is what the kernel's scheduler accounts to every
# thread of each Sluice (/proc/PID/task/*/schedstat, nanoseconds), over the same window.
#
# Environment: A, B (configuration paths), RATE (1000), ROUND_SECONDS (10), ROUNDS (20),
# SLUICE (the binary, target/release/sluice), SLUICE_A and SLUICE_B (a binary per side, to
# compare two builds).
# Prints each round's B/A ratio, their median with a bootstrap 95% interval, and each side's
# median CPU per call.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

A=${A:-bench/sluice-bench.toml}
B=${B:-bench/sluice-bench-plugins.toml}
RATE=${RATE:-1000}
SECONDS_PER_ROUND=${ROUND_SECONDS:-10}
ROUNDS=${ROUNDS:-20}
SLUICE=${SLUICE:-target/release/sluice}
# Two builds can be compared the same way (the same configuration for both, or not).
SLUICE_A=${SLUICE_A:-$SLUICE}
SLUICE_B=${SLUICE_B:-$SLUICE}
CALLED=${CALLED:-15552001111}
WORK=$(mktemp -d)
PIDS=()
COPIES=()

cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
    for net in 100 101; do
        pkill -9 -f "sipp -sf tests/scenarios/ua[cs].xml -i 127.0.$net\." 2>/dev/null
    done
    rm -rf "$WORK"
    for c in "${COPIES[@]:-}"; do [ -n "$c" ] && rm -f "$c"; done
}
trap cleanup EXIT INT TERM

command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 1; }
for bin in "$SLUICE_A" "$SLUICE_B"; do
    [ -x "$bin" ] || { echo "$bin not built (cargo build --release -p sluice)"; exit 1; }
done
ulimit -n 65536 2>/dev/null || true

# Each configuration on either network: the 101 copy has every 127.0.100.x moved to 127.0.101.x.
# The copies sit beside the original (removed on exit), so that the files it names relative to
# itself (keys, a plugin directory) are found.
declare -A CFG
for side in A B; do
    cfg=${!side}
    [ -r "$cfg" ] || { echo "$side: cannot read $cfg"; exit 1; }
    for net in 100 101; do
        CFG[$side,$net]="$(dirname "$cfg")/.ab-$$-$side-$net.toml"
        COPIES+=("${CFG[$side,$net]}")
        sed "s/127\.0\.100\./127.0.$net./g" "$cfg" >"${CFG[$side,$net]}"
    done
done

# Nanoseconds on a CPU, every thread of a process.
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'
}

# Start a Sluice binary on a configuration (its pid in STARTED); ready when it answers an
# OPTIONS (bounded: 10 s).
start_sluice() {
    local bin=$1 cfg=$2 net=$3
    "$bin" run --config "$cfg" --log warn >"$WORK/sluice-$net.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_ready "127.0.$net.10" "127.0.$net.1:5060" && return 0
    echo "Sluice on $cfg did not come up" >&2
    return 1
}

RATIOS=()
A_US=()
B_US=()
for round in $(seq 1 "$ROUNDS"); do
    # A on 100 and B on 101 in odd rounds, the other way round in even ones.
    if [ $((round % 2)) -eq 1 ]; then net_a=100; net_b=101; else net_a=101; net_b=100; fi
    for net in 100 101; do
        sipp -sf tests/scenarios/uas.xml -i "127.0.$net.20" -p 5060 -nostdin -bg >/dev/null 2>&1
    done
    sleep 0.5
    start_sluice "$SLUICE_A" "${CFG[A,$net_a]}" "$net_a" || exit 1
    pid_a=$STARTED
    start_sluice "$SLUICE_B" "${CFG[B,$net_b]}" "$net_b" || exit 1
    pid_b=$STARTED
    sleep 1
    a0=$(cpu_ns "$pid_a"); b0=$(cpu_ns "$pid_b")
    callers=()
    for net in $net_a $net_b; do
        timeout $((SECONDS_PER_ROUND * 3 + 30)) sipp -sf tests/scenarios/uac.xml -i "127.0.$net.10" -p 5060 \
            "127.0.$net.1:5060" -s "$CALLED" -r "$RATE" -m $((RATE * SECONDS_PER_ROUND)) -l $((RATE * 4)) \
            -nostdin -default_behaviors all,-abortunexp -timeout_error -recv_timeout 10000 \
            >"$WORK/uac-$net.out" 2>&1 &
        callers+=($!)
    done
    wait "${callers[@]}"
    sleep 1
    a1=$(cpu_ns "$pid_a"); b1=$(cpu_ns "$pid_b")
    stop_pid "$pid_a"; stop_pid "$pid_b"
    for net in 100 101; do pkill -f "sipp -sf tests/scenarios/uas.xml -i 127.0.$net.20" 2>/dev/null; done
    sleep 0.5
    ok_a=$(sipp_stat "$WORK/uac-$net_a.out" "Successful call"); failed_a=$(sipp_stat "$WORK/uac-$net_a.out" "Failed call")
    ok_b=$(sipp_stat "$WORK/uac-$net_b.out" "Successful call"); failed_b=$(sipp_stat "$WORK/uac-$net_b.out" "Failed call")
    if [ "$failed_a" -ne 0 ] || [ "$failed_b" -ne 0 ] || [ "$ok_a" -eq 0 ] || [ "$ok_b" -eq 0 ]; then
        echo "  round $round: failed calls (A $ok_a ok $failed_a failed, B $ok_b ok $failed_b failed), not counted"
        continue
    fi
    read -r ua ub ratio < <(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v na="$ok_a" -v nb="$ok_b" \
        'BEGIN { ua = a / na / 1000; ub = b / nb / 1000; printf "%.1f %.1f %.4f\n", ua, ub, ub / ua }')
    echo "  round $round (A on .$net_a, B on .$net_b): A $ua us, B $ub us per call, B/A $ratio ($ok_a, $ok_b calls; $((a1 - a0)), $((b1 - b0)) ns)"
    RATIOS+=("$ratio"); A_US+=("$ua"); B_US+=("$ub")
done

[ "${#RATIOS[@]}" -gt 0 ] || { echo "no round counted"; exit 1; }
echo
[ "$SLUICE_A" = "$SLUICE_B" ] || echo "== A runs $SLUICE_A, B runs $SLUICE_B"
echo "== A = $A, B = $B: $RATE calls/s each, at once, ${SECONDS_PER_ROUND}s, ${#RATIOS[@]} rounds ($(date -u +%Y-%m-%d), $(nproc) cores)"
python3 - "${#RATIOS[@]}" "${RATIOS[@]}" "${A_US[@]}" "${B_US[@]}" <<'EOF'
import random, statistics, sys
n = int(sys.argv[1])
vals = [float(v) for v in sys.argv[2:]]
r, a, b = vals[:n], vals[n:2 * n], vals[2 * n:]
rng = random.Random(1)
meds = sorted(statistics.median(rng.choices(r, k=n)) for _ in range(10000))
print("A: median %.1f us per call; B: median %.1f us per call" % (statistics.median(a), statistics.median(b)))
q = statistics.quantiles(r, n=4) if n > 1 else [r[0], r[0], r[0]]
print("B/A by round: median %.3f (bootstrap 95%% interval %.3f-%.3f; quartiles %.3f-%.3f)" % (
    statistics.median(r), meds[249], meds[9749], q[0], q[2]))
print("rounds: " + " ".join("%.3f" % v for v in r))
EOF
