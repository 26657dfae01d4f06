# Shell helpers that bench/run.sh and bench/ab.sh share; sourced, not run. Both set CALLED (the
# number SIPp dials) and run from the repository's root.

# A counter from SIPp's final statistics (`Successful call`, `Failed call`, `Call Rate`), read
# from its saved output: the cumulative column of the last screen, 0 when there is none.
sipp_stat() {
    awk -F'|' -v what="$2" '$0 ~ what { gsub(/ |cps/, "", $3); v = $3 } END { print v + 0 }' "$1"
}

# Wait until the SIP server at $2 (ip:port) completes a call from $1 (bounded: 10 s).
wait_ready() {
    for _ in $(seq 1 50); do
        if timeout 2 sipp -sf tests/scenarios/uac.xml -i "$1" -p 5071 "$2" -s "$CALLED" -m 1 \
            -nostdin -timeout 1s >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Stop the process $1: Sluice drains on the first signal and exits at once on the second; what
# is still there after 5 s is killed.
stop_pid() {
    kill "$1" 2>/dev/null
    sleep 0.2
    kill "$1" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null
}
