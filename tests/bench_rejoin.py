#!/usr/bin/env python3
"""`make bench-rejoin`: how long a wiped validator takes to rejoin a loaded
chain, by replay from genesis and from a state snapshot, in one session.

Release validators run as real processes with RocksDB on 127.0.0.1. The
load generator commits TRANSFERS transfers from SENDERS accounts to
NEW_ACCOUNTS accounts that did not exist (each becomes a leaf of the state
tree). Then, for each way of joining, the last validator is killed (-9),
its chain data deleted (`chatpay-node unsafe-reset`), and it is started
again with `--sync-from genesis` or `--sync-from snapshot`. The time is
from its start until it has committed the height the others had then. Its
state root must then equal a peer's at a later height both committed.

Settings (environment): BIN (target/release), VALIDATORS (4), SENDERS
(2000), NEW_ACCOUNTS (100000), TRANSFERS (200000), RATE (3000), OUT
(target/bench/rejoin.json). The validators keep their sockets, bound
here, for the whole run, so a restart serves on the same port (ADR 0012).
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("BIN", "target/release")
VALIDATORS = int(os.environ.get("VALIDATORS", "4"))
SENDERS = int(os.environ.get("SENDERS", "2000"))
NEW_ACCOUNTS = int(os.environ.get("NEW_ACCOUNTS", "100000"))
TRANSFERS = int(os.environ.get("TRANSFERS", "200000"))
RATE = int(os.environ.get("RATE", "3000"))
OUT = os.environ.get("OUT", "target/bench/rejoin.json")


def node_cmd(*args: str) -> str:
    return subprocess.run([f"{BIN}/chatpay-node", *args], check=True,
                          capture_output=True, text=True).stdout


def status(port: int, height=None) -> dict:
    """`chatpay-node status` as a dict ({} while the node does not answer)."""
    args = ["status", "--node", f"127.0.0.1:{port}"]
    if height is not None:
        args += ["--height", str(height)]
    try:
        out = node_cmd(*args)
    except subprocess.CalledProcessError:
        return {}
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


def height(port: int) -> int:
    return int(status(port).get("height", "0"))


class Net:
    def __init__(self, tmp: str):
        self.tmp = tmp
        self.sockets = []
        for _ in range(VALIDATORS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            s.listen(1024)
            self.sockets.append(s)
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self.procs = [None] * VALIDATORS
        subprocess.run(
            [f"{BIN}/chatpay-loadgen", "prepare", "--out", f"{tmp}/net",
             "--validators", str(VALIDATORS), "--ports", ",".join(map(str, self.ports)),
             "--accounts", str(SENDERS)],
            check=True, stdout=subprocess.DEVNULL)

    def home(self, i: int) -> str:
        return f"{self.tmp}/net/node{i}"

    def start(self, i: int, *extra: str) -> None:
        fd = self.sockets[i].fileno()

        def as_fd_3() -> None:
            if fd != 3:
                os.dup2(fd, 3)
            else:
                os.set_inheritable(3, True)

        env = dict(os.environ, CHATPAY_METRICS_LISTEN="", CHATPAY_LOG="info", NO_COLOR="1",
                   LISTEN_FDS="1", CHATPAY_SYNC_SNAPSHOT_MIN_HEIGHT="1")
        env.pop("LISTEN_PID", None)
        with open(f"{self.tmp}/node{i}.log", "a") as log:
            self.procs[i] = subprocess.Popen(
                [f"{BIN}/chatpay-node", "start", "--home", self.home(i), *extra],
                env=env, stdout=subprocess.DEVNULL, stderr=log, close_fds=False,
                preexec_fn=as_fd_3)

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        self.procs[i] = None

    def stop_all(self) -> None:
        for i in range(VALIDATORS):
            self.kill(i)


def wait_until(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench-rejoin: timed out waiting for {what}")
        time.sleep(0.05)


def rejoin(net: Net, mode: str) -> dict:
    last = VALIDATORS - 1
    others = range(last)
    net.kill(last)
    node_cmd("unsafe-reset", "--home", net.home(last))
    target = max(height(net.ports[i]) for i in others)
    started = time.monotonic()
    net.start(last, "--sync-from", mode)
    wait_until(f"validator {last} to reach {target} ({mode})",
               lambda: height(net.ports[last]) >= target, 1800)
    seconds = time.monotonic() - started
    # A later height both committed: the same block and state root.
    later = target + 1
    wait_until(f"height {later}",
               lambda: min(height(net.ports[last]), height(net.ports[0])) >= later, 120)
    mine, theirs = status(net.ports[last], later), status(net.ports[0], later)
    if (mine.get("block"), mine.get("state")) != (theirs.get("block"), theirs.get("state")):
        sys.exit(f"bench-rejoin: at height {later} validator {last} has {mine}, validator 0 {theirs}")
    log = open(f"{net.tmp}/node{last}.log").read()
    imported = re.findall(r"state imported from a snapshot.*?height=(\d+).*?leaves=(\d+)", log)
    took = re.findall(r"state snapshot imported.*?chunks=(\d+).*?ms=(\d+)", log)
    snapshot = None
    if mode == "snapshot" and imported and took:
        snapshot = {"height": int(imported[-1][0]), "leaves": int(imported[-1][1]),
                    "chunks": int(took[-1][0]), "import_ms": int(took[-1][1])}
    return {"mode": mode, "seconds": round(seconds, 2), "target_height": target,
            "checked_height": later, "state_root": mine.get("state"), "snapshot": snapshot}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        net = Net(tmp)
        try:
            for i in range(VALIDATORS):
                net.start(i, "--sync-from", "genesis")
            wait_until("the chain to start", lambda: height(net.ports[0]) >= 3, 60)
            duration = -(-TRANSFERS // RATE)
            nodes = ",".join(f"127.0.0.1:{p}" for p in net.ports)
            print(f"bench-rejoin: {TRANSFERS} transfers at {RATE}/s from {SENDERS} accounts "
                  f"to {NEW_ACCOUNTS} new ones", flush=True)
            subprocess.run(
                [f"{BIN}/chatpay-loadgen", "run", "--nodes", nodes, "--accounts", str(SENDERS),
                 "--rate", str(RATE), "--duration", str(duration),
                 "--new-accounts", str(NEW_ACCOUNTS), "--out", f"{tmp}/load.json"],
                check=True, stdout=subprocess.DEVNULL)
            load = json.load(open(f"{tmp}/load.json"))
            head = height(net.ports[0])
            print(f"bench-rejoin: {load['committed']} transfers committed, height {head}",
                  flush=True)
            runs = []
            for mode in ("genesis", "snapshot"):
                r = rejoin(net, mode)
                extra = ""
                if r["snapshot"]:
                    sn = r["snapshot"]
                    extra = (f" (snapshot of height {sn['height']}: {sn['leaves']} leaves in "
                             f"{sn['chunks']} chunks, imported in {sn['import_ms']} ms)")
                print(f"bench-rejoin: by {mode}: {r['seconds']} s to height "
                      f"{r['target_height']}{extra}; state root at {r['checked_height']} matches",
                      flush=True)
                runs.append(r)
            ratio = runs[0]["seconds"] / runs[1]["seconds"]
            result = {"validators": VALIDATORS, "committed_transfers": load["committed"],
                      "accounts": SENDERS + NEW_ACCOUNTS, "height": head, "runs": runs,
                      "replay_over_snapshot": round(ratio, 2)}
            os.makedirs(os.path.dirname(OUT), exist_ok=True)
            json.dump(result, open(OUT, "w"), indent=2)
            print(f"bench-rejoin: snapshot {ratio:.1f}x faster than replay (result: {OUT})")
        finally:
            net.stop_all()


if __name__ == "__main__":
    main()
