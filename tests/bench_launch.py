#!/usr/bin/env python3
"""Starts the benchmark's validators on sockets bound here and passed to them.

Usage: bench_launch.py BIN DIR VALIDATORS ACCOUNTS

Binds one listening socket per validator on 127.0.0.1 (port 0), writes the
validator homes with those ports (`chatpay-loadgen prepare`), and starts
each `chatpay-node start` with its socket as fd 3 and LISTEN_FDS=1, so no
port is ever free between being chosen and being served (docs/adr/0012).
Prints one line per validator: its pid and its port. Logs go to
DIR/nodeI.log.
"""

import os
import socket
import subprocess
import sys


def as_fd_3(fd: int) -> None:
    """In the child: the socket becomes fd 3, inherited by the validator."""
    if fd != 3:
        os.dup2(fd, 3)  # the copy is inheritable
    else:
        os.set_inheritable(3, True)


def main() -> None:
    bin_dir, out, validators, accounts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sockets = []
    for _ in range(validators):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(1024)
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    subprocess.run(
        [f"{bin_dir}/chatpay-loadgen", "prepare", "--out", f"{out}/net",
         "--validators", str(validators), "--ports", ",".join(map(str, ports)),
         "--accounts", accounts],
        check=True, stdout=subprocess.DEVNULL,
    )
    env = dict(os.environ, CHATPAY_METRICS_LISTEN="127.0.0.1:0", CHATPAY_LOG="warn", LISTEN_FDS="1")
    env.pop("LISTEN_PID", None)
    for i, s in enumerate(sockets):
        fd = s.fileno()
        with open(f"{out}/node{i}.log", "w") as log:
            # The child gets the socket as fd 3; Python's own descriptors
            # are not inherited (PEP 446), so nothing else leaks.
            p = subprocess.Popen(
                [f"{bin_dir}/chatpay-node", "start", "--home", f"{out}/net/node{i}"],
                env=env, stdout=subprocess.DEVNULL, stderr=log, close_fds=False,
                preexec_fn=lambda fd=fd: as_fd_3(fd),
            )
        print(p.pid, ports[i], flush=True)


if __name__ == "__main__":
    main()
