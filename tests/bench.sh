#!/bin/sh
# `make bench`: release validators as real processes with RocksDB on
# 127.0.0.1, the load generator for DURATION seconds at RATE transfers/s,
# figures printed and written to target/bench/result.json.
# Settings (environment): VALIDATORS (4), RATE (500), DURATION (20),
# ACCOUNTS (200), MEMO (0 bytes; MEMO_ENCRYPTED=1 encrypts each memo for its
# payee and payer, as the wallet does, at most 254 bytes), BATCH (0: each transfer on its own
# SubmitTransaction call; N: SubmitTransactions calls of up to N, what
# falls due within 5 ms per validator, as a gateway would); MAX=1 searches the highest rate that
# commits >= 99% with p99 <= 1 s (`make bench-max`, from RATE up; every
# run is kept in target/bench/runs/ and drawn by tests/plot.py in
# target/bench/bench.svg, the best in target/bench/max.json); OVERLOAD=1 offers 3x the rate in max.json (or
# RATE, if set) for DURATION (60) seconds from ACCOUNTS (2000) accounts and fails unless every validator
# still answers, each stayed under RSS_BOUND_MIB (1024) of memory, the
# clients were refused with a reason, and at least MIN_SHARE (0.5) of the
# saturation rate (RATE / 3) committed (`make bench-overload`).
# STOP=K kills the last K validators (kill -9) once the chain runs and
# sends the load to the others; WARMUP=S leaves the first S seconds out of
# the latency percentiles (`STOP=1 WARMUP=60 DURATION=120 make bench`: one of
# four crashed, measured after the first minute).
set -eu
if [ "${OVERLOAD:-0}" = 1 ]; then
    DURATION=${DURATION:-60}
    # Each account keeps at most 64 transfers pending (the load generator's
    # window, the validators' default per-sender limit): overload takes
    # many users, 2 000 x 64 against a validator's mempool of 50 000.
    ACCOUNTS=${ACCOUNTS:-2000}
    if [ -z "${RATE:-}" ]; then
        [ -f target/bench/max.json ] || { echo "run make bench-max first, or set RATE"; exit 1; }
        RATE=$(python3 -c "import json; print(3 * round(json.load(open('target/bench/max.json'))['offered_tps']))")
    fi
    OUT=${OUT:-target/bench/overload.json}
fi
VALIDATORS=${VALIDATORS:-4}
RATE=${RATE:-500}
DURATION=${DURATION:-20}
ACCOUNTS=${ACCOUNTS:-200}
MEMO=${MEMO:-0}
MEMO_ENCRYPTED=${MEMO_ENCRYPTED:-0}
memo_flag=""
if [ "$MEMO_ENCRYPTED" = 1 ]; then memo_flag="--memo-encrypted"; fi
BATCH=${BATCH:-0}
OUT=${OUT:-target/bench/result.json}

# BIN=DIR runs the chatpay-node and chatpay-loadgen found there instead
# (to compare builds side by side).
if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    cargo build --release --locked --bin chatpay-node --bin chatpay-loadgen
    bin=target/release
fi
dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    # The validators are not this shell's children (the launcher started
    # them): wait for each to exit, up to 10 s, before removing their data.
    for p in $pids; do
        n=0
        while kill -0 "$p" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Each validator serves on a socket bound before its port is written into
# the genesis and passed to it (no port is free in between; ADR 0012).
launched=$(python3 tests/bench_launch.py "$bin" "$dir" "$VALIDATORS" "$ACCOUNTS")
pids=$(echo "$launched" | awk '{print $1}' | tr '\n' ' ')
nodes=$(echo "$launched" | awk '{printf "%s127.0.0.1:%s", (NR > 1 ? "," : ""), $2}')
first=${nodes%%,*}
# Warm up: measure a running chain, not its first rounds (streams still
# connecting, leaders waiting out the idle interval).
height() {
    "$bin/chatpay-node" status --node "$first" 2>/dev/null | awk '/^height/ {print $2}'
}
tries=0
until [ "$(height || echo 0)" -ge 3 ] 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { echo "validators did not start"; cat "$dir"/node*.log; exit 1; }
    sleep 0.1
done
STOP=${STOP:-0}
WARMUP=${WARMUP:-0}
if [ "$STOP" -gt 0 ]; then
    live=$((VALIDATORS - STOP))
    i=0 kept_pids="" kept_nodes=""
    for p in $pids; do
        if [ "$i" -lt "$live" ]; then
            kept_pids="$kept_pids $p"
        else
            kill -9 "$p"
        fi
        i=$((i + 1))
    done
    pids=$kept_pids
    nodes=$(echo "$nodes" | cut -d, -f1-"$live")
    echo "bench: stopped $STOP of $VALIDATORS validators (kill -9)"
fi
run() {
    echo "bench: $VALIDATORS validators, $1 transfers/s offered for $DURATION s, $ACCOUNTS accounts, memo $MEMO bytes (encrypted: $MEMO_ENCRYPTED), batch $BATCH, warm-up $WARMUP s"
    "$bin/chatpay-loadgen" run --nodes "$nodes" --accounts "$ACCOUNTS" --rate "$1" \
        --duration "$DURATION" --memo-bytes "$MEMO" $memo_flag --batch "$BATCH" --warmup "$WARMUP" \
        --pids "$(echo $pids | tr ' ' ',')" --out "$2"
}
if [ "${MAX:-0}" = 1 ]; then
    # `make bench-max`: double the rate while >= 99% commits with p99 <= 1 s,
    # then bisect between the last good and the first bad rate.
    good=0 bad=0 rate=$RATE
    ok() {
        python3 -c "import json,sys; r=json.load(open('$1')); sys.exit(0 if r['committed_fraction'] >= 0.99 and r['latency_ms']['p99'] <= 1000 else 1)"
    }
    mkdir -p target/bench/runs
    for step in 1 2 3 4 5 6 7 8; do
        run "$rate" "$dir/r$step.json"
        cp "$dir/r$step.json" "target/bench/runs/v$VALIDATORS-r$rate.json"
        if ok "$dir/r$step.json"; then
            good=$rate; cp "$dir/r$step.json" "$OUT"; cp "$dir/r$step.json" target/bench/max.json
        else
            bad=$rate
        fi
        if [ "$bad" = 0 ]; then rate=$((rate * 2)); else rate=$(((good + bad) / 2)); fi
        [ "$bad" != 0 ] && [ $((bad - good)) -le $((bad / 10)) ] && break
    done
    echo "bench-max: highest rate meeting >= 99% committed and p99 <= 1 s: $good transfers/s (result: $OUT)"
    python3 tests/plot.py target/bench/runs target/bench/bench.svg
elif [ "${OVERLOAD:-0}" = 1 ]; then
    run "$RATE" "$OUT"
    python3 - "$OUT" "${RSS_BOUND_MIB:-1024}" "$RATE" "${MIN_SHARE:-0.5}" <<'CHECK'
import json, sys
r, bound = json.load(open(sys.argv[1])), float(sys.argv[2])
# Overload is 3x saturation: what commits should stay near saturation.
saturation, min_share = float(sys.argv[3]) / 3, float(sys.argv[4])
refused = r["rejected"]
problems = []
if not all(r["validators_serving_after"]):
    problems.append(f"validators serving after the load: {r['validators_serving_after']}")
if max(r["validator_peak_rss_mib"]) > bound:
    problems.append(f"peak RSS {r['validator_peak_rss_mib']} MiB over the bound of {bound:.0f} MiB")
unclear = [k for k in refused if not k.islower()]
if unclear:
    problems.append(f"refusals without a reason: {unclear}")
if not refused:
    problems.append("overload was never refused")
if r["committed_tps"] < min_share * saturation:
    problems.append(f"{r['committed_tps']:.0f} transfers/s committed, under {min_share} of the "
                    f"saturation rate {saturation:.0f}/s")
print(f"overload: peak RSS {max(r['validator_peak_rss_mib']):.0f} MiB (bound {bound:.0f}), "
      f"refused {sum(refused.values())} with {sorted(refused)}, "
      f"{r['committed_tps']:.0f} transfers/s committed ({r['committed_tps'] / saturation:.2f} of "
      f"the saturation rate {saturation:.0f}/s)")
for p in problems:
    print("overload: FAILED:", p)
sys.exit(1 if problems else 0)
CHECK
else
    run "$RATE" "$OUT"
    echo "result: $OUT"
fi
