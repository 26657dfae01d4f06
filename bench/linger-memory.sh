#!/usr/bin/env bash
# Resident memory of Sluice under a steady call rate, batch after batch, until the finished
# calls' transactions that linger (RFC 3261 Timers D/J/K, RFC 6026 Timers L/M: up to 64*T1 =
# 32 s) level off. SIPp UAC -> Sluice -> SIPp UAS on 127.0.100.0/24, as bench/run.sh.
#
#   cargo build --release -p sluice && bash bench/linger-memory.sh
#
# Environment: CONFIG (bench/sluice-bench.toml), RATE (1000 calls/s), BATCHES (8),
# BATCH_CALLS (5000), SLUICE (target/release/sluice). Prints, after each batch, the calls so
# far, those Sluice answered (its admin API's metrics, at ADMIN, 127.0.100.1:9060), the resident
# memory and the minor page faults so far.
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-bench/sluice-bench.toml}
RATE=${RATE:-1000}
BATCHES=${BATCHES:-8}
BATCH_CALLS=${BATCH_CALLS:-5000}
SLUICE=${SLUICE:-target/release/sluice}
UAS_IP=127.0.100.20
ADMIN=${ADMIN:-127.0.100.1:9060}

command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 1; }
pkill -f "sipp -sf tests/scenarios/uas.xml -i $UAS_IP" 2>/dev/null && sleep 0.5
sipp -sf tests/scenarios/uas.xml -i "$UAS_IP" -p 5060 -nostdin -bg >/dev/null 2>&1
"$SLUICE" run --config "$CONFIG" --log warn >/dev/null 2>&1 &
SP=$!
cleanup() {
    kill "$SP" 2>/dev/null; sleep 0.3; kill -9 "$SP" 2>/dev/null
    pkill -f "sipp -sf tests/scenarios/uas.xml -i $UAS_IP" 2>/dev/null
}
trap cleanup EXIT INT TERM
# Ready when it answers a call (bounded: 10 s).
for _ in $(seq 1 50); do
    timeout 2 sipp -sf tests/scenarios/uac.xml -i 127.0.100.10 -p 5071 127.0.100.1:5060 \
        -s 15552001111 -m 1 -nostdin -timeout 1s >/dev/null 2>&1 && break
    sleep 0.2
done
for b in $(seq 1 "$BATCHES"); do
    sipp -sf tests/scenarios/uac.xml -i 127.0.100.10 -p 5070 127.0.100.1:5060 -s 15552001111 \
        -r "$RATE" -m "$BATCH_CALLS" -nostdin >/dev/null 2>&1
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SP/status")
    flt=$(awk '{print $10}' "/proc/$SP/stat")
    answered=$(curl -s "http://$ADMIN/metrics" | awk '/^sluice_calls_answered_total/ {n += $2} END {print n + 0}')
    echo "calls $((b * BATCH_CALLS)) (answered $answered): resident $((rss / 1024)) MiB, minor faults $flt"
done
