#!/usr/bin/env bash
# Run every libFuzzer target for a bounded time, seeded with the RFC 4475/5118 torture corpus
# (SIP targets), the SDP corpus, the bundled configurations, a few edits and DID pools,
# and the SIP dictionary (multi-byte UTF-8 included). Usage: bash fuzz/run.sh [SECONDS_PER_TARGET]
#
# cargo-fuzz wants a nightly compiler for its sanitizer flags; with `-s none` it needs none of
# them, and RUSTC_BOOTSTRAP lets the stable compiler accept the one unstable flag left.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in ${TARGETS:-parse framer engine sdp config edit did_pool}; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus"
    case $target in
        sdp) cp host/sdp/tests/corpus/*.sdp "$corpus"/ ;;
        config) cp examples/*.toml bench/*.toml "$corpus"/ ;;
        did_pool) printf '13322496213-13322496215;16468097069|101; 203; 300-450\n' >"$corpus/seed"
            printf '1000-2000|2000-3000\n' >"$corpus/overlap" ;;
        edit) printf 'sX-Account:1234\nrSubject\nuINVITE\nbapplication/sdp:v=0\n' >"$corpus/seed" ;;
        *) cp tests/conformance/rfc4475/*.dat tests/conformance/rfc5118/*.dat "$corpus"/ ;;
    esac
    echo "== fuzz $target for ${seconds}s"
    log=fuzz/corpus/$target.log
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" --fuzz-dir fuzz -s none -- \
        -max_total_time="$seconds" -dict=fuzz/sip.dict -print_final_stats=1 "$corpus" >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz target $target failed (a crash is saved under fuzz/artifacts/$target)"
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss)' "$log"
done
