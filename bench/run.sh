#!/usr/bin/env bash
# Signalling benchmark: SIPp UAC -> system -> SIPp UAS on loopback, for Sluice and for Kamailio
# (stateful proxy: record_route + t_relay) in the same run, so that the ratio is meaningful on a
# noisy machine. First the CPU time each system spends per call at a fixed rate well below
# saturation (CPU_RATE calls/s for CPU_SECONDS, CPU_ROUNDS rounds with the systems interleaved;
# user + system time of every thread and child process, divided by the calls): this needs no
# spare cores for SIPp, so it separates systems that all outrun the generator on two cores.
# Then, when SYSTEMS has both sluice and sluice-plugins, the two side by side (bench/ab.sh: the
# same calls through both at once, AB_ROUNDS rounds), which measures what the plugins add more
# tightly than rounds taken in turn.
# Then for each system the highest call rate sustained for DURATION seconds with under 0.1%
# failed calls, INVITE->200 latency at LAT_RATE, and (Sluice) the resident memory with
# HOLD_CALLS calls up at once.
#
#   cargo build --release -p sluice && bash bench/run.sh
#
# Environment: CPU_RATE (1000), CPU_SECONDS (15), CPU_ROUNDS (3; 0 skips the CPU phase),
# AB_ROUNDS (10; 0 skips the side-by-side phase, which runs unpinned),
# DURATION (20; 0 skips the maximum-rate phase), RATES ("500 1000 ... 8000 10000"),
# LAT_RATE (200), LAT_SECONDS (10), HOLD_CALLS (10000; 0 skips the memory phase),
# SYSTEMS ("sluice sluice-plugins kamailio"; sluice-plugins is Sluice with a brand and two rule
# sets on the trunk, bench/sluice-bench-plugins.toml; sluice-stir signs every call with
# STIR/SHAKEN, bench/sluice-bench-stir.toml; sluice-tenants routes every call through tenant
# routing: numbers normalised, route, caller-ID check, bench/sluice-bench-tenants.toml;
# sluice=PATH runs Sluice on any other configuration),
# SYS_CPUS and GEN_CPUS (unset: no pinning; CPU lists for taskset, the system under test and
# every SIPp/latency generator).
# Traffic stays on 127.0.100.0/24. SIPp does not abort a call on an unexpected message
# (`-abortunexp` off, as ../shared/bench's anchor does): Kamailio's worker processes may relay a
# 180 after the 200 of the same call, which a stateful system never does; such a call still
# counts as failed if it does not complete.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CPU_RATE=${CPU_RATE:-1000}
CPU_SECONDS=${CPU_SECONDS:-15}
CPU_ROUNDS=${CPU_ROUNDS:-3}
AB_ROUNDS=${AB_ROUNDS:-10}
DURATION=${DURATION:-20}
RATES=${RATES:-"500 1000 1500 2000 2500 3000 3500 4000 5000 6000 7000 8000 10000"}
LAT_RATE=${LAT_RATE:-200}
LAT_SECONDS=${LAT_SECONDS:-10}
HOLD_CALLS=${HOLD_CALLS:-10000}
SYSTEMS=${SYSTEMS:-"sluice sluice-plugins kamailio"}

# A real number: the plugins' work is about numbers (SIPp's default `service` is none, and a
# rule set that rewrites it refuses the edit and logs a warning per call).
CALLED=${CALLED:-15552001111}
PROXY=127.0.100.1
UAC_IP=127.0.100.10
UAS_IP=127.0.100.20
SLUICE=${SLUICE:-target/release/sluice}
# Optional pinning (CPU lists for taskset): the system under test on SYS_CPUS, SIPp on GEN_CPUS,
# so that the generator does not share a core (and its caches) with the system it measures.
SYS_CPUS=${SYS_CPUS:-}
GEN_CPUS=${GEN_CPUS:-}
SYS_PIN=(); [ -n "$SYS_CPUS" ] && SYS_PIN=(taskset -c "$SYS_CPUS")
GEN_PIN=(); [ -n "$GEN_CPUS" ] && GEN_PIN=(taskset -c "$GEN_CPUS")
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null
    done
    pkill -f "kamailio -f $PWD/bench/kamailio.cfg" 2>/dev/null
    sleep 0.5
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ulimit -n 65536 2>/dev/null || true
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 1; }

start_uas() {
    ${GEN_PIN[@]+"${GEN_PIN[@]}"} sipp -sf tests/scenarios/uas.xml -i "$UAS_IP" -p 5060 -nostdin -bg -trace_err \
        -error_file "$WORK/uas.err" >/dev/null 2>&1
    sleep 0.5
}

stop_uas() {
    # A SIPp that carried an overload may take a while to exit: insist.
    pkill -f "sipp -sf tests/scenarios/uas.xml -i $UAS_IP" 2>/dev/null
    for _ in $(seq 1 50); do
        pgrep -f "sipp -sf tests/scenarios/uas.xml -i $UAS_IP" >/dev/null || break
        sleep 0.1
    done
    pkill -9 -f "sipp -sf tests/scenarios/uas.xml -i $UAS_IP" 2>/dev/null
    sleep 0.5
}

start_system() {
    case "$1" in
    sluice)
        ${SYS_PIN[@]+"${SYS_PIN[@]}"} "$SLUICE" run --config bench/sluice-bench.toml --log warn >"$WORK/sluice.log" 2>&1 &
        SYS_PID=$!
        ;;
    sluice-plugins)
        ${SYS_PIN[@]+"${SYS_PIN[@]}"} "$SLUICE" run --config bench/sluice-bench-plugins.toml --log warn >"$WORK/sluice.log" 2>&1 &
        SYS_PID=$!
        ;;
    sluice-stir)
        ${SYS_PIN[@]+"${SYS_PIN[@]}"} "$SLUICE" run --config bench/sluice-bench-stir.toml --log warn >"$WORK/sluice.log" 2>&1 &
        SYS_PID=$!
        ;;
    sluice-tenants)
        ${SYS_PIN[@]+"${SYS_PIN[@]}"} "$SLUICE" run --config bench/sluice-bench-tenants.toml --log warn >"$WORK/sluice.log" 2>&1 &
        SYS_PID=$!
        ;;
    sluice=*)
        # Any other Sluice configuration, named after the '=' (for decomposing a cost).
        ${SYS_PIN[@]+"${SYS_PIN[@]}"} "$SLUICE" run --config "${1#sluice=}" --log warn >"$WORK/sluice.log" 2>&1 &
        SYS_PID=$!
        ;;
    kamailio)
        ${SYS_PIN[@]+"${SYS_PIN[@]}"} kamailio -f "$PWD/bench/kamailio.cfg" -DD -E -m 1024 -M 64 -w "$WORK" \
            >"$WORK/kamailio.log" 2>&1 &
        SYS_PID=$!
        ;;
    esac
    PIDS+=("$SYS_PID")
    wait_ready "$UAC_IP" "$PROXY:5060" && return 0
    echo "$1 did not come up" >&2
    return 1
}

stop_system() {
    stop_pid "$SYS_PID"
    pkill -9 -f "kamailio -f $PWD/bench/kamailio.cfg" 2>/dev/null
    sleep 0.5
}

# One trial at a rate: prints "ok ACHIEVED_RATE" or "fail REASON".
trial() {
    local rate=$1 calls=$(( $1 * DURATION )) out="$WORK/trial.out"
    timeout $(( DURATION * 3 + 30 )) ${GEN_PIN[@]+"${GEN_PIN[@]}"} sipp -sf tests/scenarios/uac.xml -i "$UAC_IP" -p 5060 "$PROXY:5060" -s "$CALLED" \
        -r "$rate" -m "$calls" -l $(( rate * 4 + 100 )) -nostdin -timeout_error \
        -default_behaviors all,-abortunexp -recv_timeout 10000 >"$out" 2>&1
    local ok failed crate
    ok=$(sipp_stat "$out" "Successful call")
    failed=$(sipp_stat "$out" "Failed call")
    crate=$(sipp_stat "$out" "Call Rate")
    if [ "$ok" -eq 0 ]; then echo "fail no-calls"; return; fi
    # Under 0.1% failed, all calls placed, and the generator kept up with the rate.
    if [ $(( failed * 1000 )) -lt $(( ok + failed )) ] && [ $(( ok + failed )) -ge "$calls" ] &&
        awk -v c="$crate" -v r="$rate" 'BEGIN { exit !(c >= 0.95 * r) }'; then
        echo "ok $crate"
    else
        echo "fail ok=$ok failed=$failed rate=$crate"
    fi
}

max_rate() {
    local best=0 r result
    for r in $RATES; do
        result=$(trial "$r")
        echo "  $1 @ $r cps: $result" >&2
        case "$result" in
        ok*) best=$r ;;
        *) break ;;
        esac
    done
    echo "$best"
}

latency() {
    # SIPp times responses in whole milliseconds; a small Python caller gives microseconds.
    timeout $(( LAT_SECONDS * 3 + 30 )) ${GEN_PIN[@]+"${GEN_PIN[@]}"} python3 bench/latency.py "$UAC_IP" "$PROXY:5060" \
        "$LAT_RATE" "$LAT_SECONDS"
}

held_memory() {
    # Hold HOLD_CALLS calls up at once; read Sluice's resident memory once all are answered.
    local base
    base=$(awk '/VmRSS/ {print $2}' "/proc/$SYS_PID/status")
    timeout 600 ${GEN_PIN[@]+"${GEN_PIN[@]}"} sipp -sf tests/scenarios/uac.xml -i "$UAC_IP" -p 5060 "$PROXY:5060" -s "$CALLED" -r 1000 -m "$HOLD_CALLS" \
        -l "$HOLD_CALLS" -d 300000 -nostdin -bg >/dev/null 2>&1
    local active=0
    for _ in $(seq 1 120); do
        active=$(curl -s "http://$PROXY:9060/status" | python3 -c \
            'import json,sys; print(json.load(sys.stdin)["active_calls"])' 2>/dev/null || echo 0)
        [ "${active:-0}" -ge "$HOLD_CALLS" ] && break
        sleep 0.5
    done
    local rss
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SYS_PID/status")
    pkill -f "sipp -sf tests/scenarios/uac.xml -i $UAC_IP" 2>/dev/null
    echo "$((rss / 1024)) MiB RSS with $active calls up at once ($((base / 1024)) MiB before)"
}

# CPU ticks (user + system) of a process and its children processes (Kamailio forks workers).
ticks_of() {
    local t=0 p
    for p in "$1" $(pgrep -P "$1"); do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat")))
    done
    echo "$t"
}

# CPU per call at CPU_RATE: prints "US_PER_CALL OK FAILED".
cpu_per_call() {
    local before after out="$WORK/cpu.out"
    sleep 1
    before=$(ticks_of "$SYS_PID")
    timeout $(( CPU_SECONDS * 3 + 30 )) ${GEN_PIN[@]+"${GEN_PIN[@]}"} sipp -sf tests/scenarios/uac.xml -i "$UAC_IP" -p 5060 "$PROXY:5060" -s "$CALLED" \
        -r "$CPU_RATE" -m $(( CPU_RATE * CPU_SECONDS )) -l $(( CPU_RATE * 4 )) -nostdin \
        -default_behaviors all,-abortunexp -timeout_error -recv_timeout 10000 >"$out" 2>&1
    sleep 1
    after=$(ticks_of "$SYS_PID")
    local ok failed
    ok=$(sipp_stat "$out" "Successful call")
    failed=$(sipp_stat "$out" "Failed call")
    awk -v d=$((after - before)) -v t="$(getconf CLK_TCK)" -v ok="$ok" -v f="$failed" \
        'BEGIN { n = ok + f; if (n == 0) n = 1; printf "%.1f %d %d\n", d / t * 1e6 / n, ok, f }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

declare -A CPU ROUND_US
if [ "$CPU_ROUNDS" -gt 0 ]; then
    echo "== CPU per call at $CPU_RATE cps for ${CPU_SECONDS}s, $CPU_ROUNDS rounds"
    for round in $(seq 1 "$CPU_ROUNDS"); do
        for sys in $SYSTEMS; do
            if [ "${sys#sluice}" != "$sys" ] && [ ! -x "$SLUICE" ]; then continue; fi
            start_uas
            start_system "$sys" || { stop_uas; continue; }
            read -r us ok failed < <(cpu_per_call)
            echo "  round $round $sys: $us us per call ($ok ok, $failed failed)"
            [ "$failed" -eq 0 ] && CPU[$sys]="${CPU[$sys]:-} $us" && ROUND_US["$sys,$round"]=$us
            stop_system
            stop_uas
        done
    done
fi

AB_RESULT=""
if [ "$AB_ROUNDS" -gt 0 ] && [ -x "$SLUICE" ] && [[ " $SYSTEMS " == *" sluice "* ]] &&
    [[ " $SYSTEMS " == *" sluice-plugins "* ]]; then
    echo "== sluice and sluice-plugins side by side at $CPU_RATE cps each, ${CPU_SECONDS}s, $AB_ROUNDS rounds"
    ROUNDS=$AB_ROUNDS RATE=$CPU_RATE ROUND_SECONDS=$CPU_SECONDS SLUICE=$SLUICE \
        A=bench/sluice-bench.toml B=bench/sluice-bench-plugins.toml bash bench/ab.sh >"$WORK/ab.out" 2>&1
    grep "^  round" "$WORK/ab.out"
    AB_RESULT=$(grep -A4 "^== A = " "$WORK/ab.out" | grep -v "^==")
fi

declare -A RATE LAT MEM
for sys in $SYSTEMS; do
    [ "$DURATION" -gt 0 ] || break
    if [ "${sys#sluice}" != "$sys" ] && [ ! -x "$SLUICE" ]; then
        echo "== sluice: $SLUICE not built, skipped (cargo build --release -p sluice)"
        continue
    fi
    echo "== $sys"
    start_uas
    start_system "$sys" || { stop_uas; continue; }
    RATE[$sys]=$(max_rate "$sys")
    # Latency and memory on fresh processes: the last, failed rate leaves an overload behind
    # (retransmissions, timers, the high-water mark of memory) that would be measured too.
    stop_system
    stop_uas
    start_uas
    start_system "$sys" || { stop_uas; continue; }
    LAT[$sys]=$(latency "$sys")
    if [ "$sys" = sluice ] && [ "$HOLD_CALLS" -gt 0 ]; then
        stop_system
        start_system "$sys" || { stop_uas; continue; }
        MEM[$sys]=$(held_memory)
    fi
    stop_system
    stop_uas
done

echo
echo "== results ($(date -u +%Y-%m-%d), $(nproc) cores)"
declare -A CPU_MED
for sys in $SYSTEMS; do
    [ -n "${CPU[$sys]:-}" ] || continue
    CPU_MED[$sys]=$(echo "${CPU[$sys]}" | tr ' ' '\n' | grep . | median)
    echo "$sys: CPU per call at $CPU_RATE cps: median ${CPU_MED[$sys]} us (rounds:${CPU[$sys]})"
done
if [ -n "${CPU_MED[sluice]:-}" ] && [ -n "${CPU_MED[kamailio]:-}" ]; then
    awk -v s="${CPU_MED[sluice]}" -v k="${CPU_MED[kamailio]}" \
        'BEGIN { printf "CPU per call, sluice/kamailio: %.2f\n", s / k }'
fi
if [ -n "${CPU_MED[sluice]:-}" ] && [ -n "${CPU_MED[sluice-stir]:-}" ]; then
    awk -v s="${CPU_MED[sluice]}" -v p="${CPU_MED[sluice-stir]}" \
        'BEGIN { printf "CPU per call, sluice-stir/sluice: %.2f (STIR/SHAKEN signing: %+.1f us per call)\n", p / s, p - s }'
fi
if [ -n "${CPU_MED[sluice]:-}" ] && [ -n "${CPU_MED[sluice-tenants]:-}" ]; then
    awk -v s="${CPU_MED[sluice]}" -v p="${CPU_MED[sluice-tenants]}" \
        'BEGIN { printf "CPU per call, sluice-tenants/sluice: %.2f (tenant routing: %+.1f us per call)\n", p / s, p - s }'
fi
if [ -n "${CPU_MED[sluice]:-}" ] && [ -n "${CPU_MED[sluice-plugins]:-}" ]; then
    awk -v s="${CPU_MED[sluice]}" -v p="${CPU_MED[sluice-plugins]}" \
        'BEGIN { printf "CPU per call, sluice-plugins/sluice: %.2f (brand + two rule sets: %+.0f%%)\n", p / s, (p / s - 1) * 100 }'
    # The same ratio within each round (the two ran seconds apart), then its median: the
    # machine's drift between rounds cancels.
    paired=$(for r in $(seq 1 "$CPU_ROUNDS"); do
        s=${ROUND_US["sluice,$r"]:-}; p=${ROUND_US["sluice-plugins,$r"]:-}
        [ -n "$s" ] && [ -n "$p" ] && awk -v s="$s" -v p="$p" 'BEGIN { printf "%.3f\n", p / s }'
    done)
    [ -n "$paired" ] && echo "  paired by round: median $(echo "$paired" | median) (rounds: $(echo $paired))"
fi
if [ -n "$AB_RESULT" ]; then
    echo "sluice (A) and sluice-plugins (B) side by side, $AB_ROUNDS rounds:"
    echo "$AB_RESULT" | sed 's/^/  /'
fi
echo "(maximum rates: ${DURATION}s per rate, <0.1% failed)"
for sys in $SYSTEMS; do
    [ -n "${RATE[$sys]:-}" ] || continue
    echo "$sys: max sustained ${RATE[$sys]} cps; INVITE->200 at ${LAT_RATE} cps: ${LAT[$sys]}"
done
if [ -n "${MEM[sluice]:-}" ]; then
    echo "sluice memory: ${MEM[sluice]}"
fi
if [ -n "${RATE[sluice]:-}" ] && [ -n "${RATE[kamailio]:-}" ] && [ "${RATE[kamailio]}" -gt 0 ]; then
    awk -v s="${RATE[sluice]}" -v k="${RATE[kamailio]}" \
        'BEGIN { printf "ratio sluice/kamailio: %.2f\n", s / k }'
fi
if [ -n "${RATE[sluice]:-}" ] && [ -n "${RATE[sluice-plugins]:-}" ] && [ "${RATE[sluice]}" -gt 0 ]; then
    awk -v p="${RATE[sluice-plugins]}" -v s="${RATE[sluice]}" \
        'BEGIN { printf "ratio sluice-plugins/sluice: %.2f (brand + two rule sets)\n", p / s }'
fi
