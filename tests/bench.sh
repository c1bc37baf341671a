#!/bin/sh
# `make bench`: release validators as real processes with RocksDB on
# 127.0.0.1, the load generator for DURATION seconds at RATE transfers/s,
# figures printed and written to target/bench/result.json.
# Settings (environment): VALIDATORS (4), RATE (500), DURATION (20),
# ACCOUNTS (200), MEMO (0 bytes); MAX=1 searches the highest rate that
# commits >= 99% with p99 <= 1 s (`make bench-max`, from RATE up).
set -eu
VALIDATORS=${VALIDATORS:-4}
RATE=${RATE:-500}
DURATION=${DURATION:-20}
ACCOUNTS=${ACCOUNTS:-200}
MEMO=${MEMO:-0}
OUT=${OUT:-target/bench/result.json}

cargo build --release --locked --bin chatpay-node --bin chatpay-loadgen
bin=target/release
dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ports=$(python3 -c "
import socket
socks = [socket.socket() for _ in range($VALIDATORS)]
for s in socks: s.bind(('127.0.0.1', 0))
print(','.join(str(s.getsockname()[1]) for s in socks))
")
"$bin/chatpay-loadgen" prepare --out "$dir/net" --validators "$VALIDATORS" \
    --ports "$ports" --accounts "$ACCOUNTS" >/dev/null
nodes=""
i=0
for port in $(echo "$ports" | tr ',' ' '); do
    CHATPAY_METRICS_LISTEN=127.0.0.1:0 CHATPAY_LOG=warn \
        "$bin/chatpay-node" start --home "$dir/net/node$i" 2>"$dir/node$i.log" &
    pids="$pids $!"
    nodes="$nodes,127.0.0.1:$port"
    i=$((i + 1))
done
nodes=${nodes#,}
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
run() {
    echo "bench: $VALIDATORS validators, $1 transfers/s offered for $DURATION s, $ACCOUNTS accounts, memo $MEMO bytes"
    "$bin/chatpay-loadgen" run --nodes "$nodes" --accounts "$ACCOUNTS" --rate "$1" \
        --duration "$DURATION" --memo-bytes "$MEMO" --pids "$(echo $pids | tr ' ' ',')" --out "$2"
}
if [ "${MAX:-0}" = 1 ]; then
    # `make bench-max`: double the rate while >= 99% commits with p99 <= 1 s,
    # then bisect between the last good and the first bad rate.
    good=0 bad=0 rate=$RATE
    ok() {
        python3 -c "import json,sys; r=json.load(open('$1')); sys.exit(0 if r['committed_fraction'] >= 0.99 and r['latency_ms']['p99'] <= 1000 else 1)"
    }
    for step in 1 2 3 4 5 6 7 8; do
        run "$rate" "$dir/r$step.json"
        if ok "$dir/r$step.json"; then
            good=$rate; cp "$dir/r$step.json" "$OUT"
        else
            bad=$rate
        fi
        if [ "$bad" = 0 ]; then rate=$((rate * 2)); else rate=$(((good + bad) / 2)); fi
        [ "$bad" != 0 ] && [ $((bad - good)) -le $((bad / 10)) ] && break
    done
    echo "bench-max: highest rate meeting >= 99% committed and p99 <= 1 s: $good transfers/s (result: $OUT)"
else
    run "$RATE" "$OUT"
    echo "result: $OUT"
fi
