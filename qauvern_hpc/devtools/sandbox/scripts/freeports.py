#!/usr/bin/env python3
"""Print N distinct free TCP ports, one a line, for a sandbox's daemons.

Ports come from 20000-32767: below Linux's ephemeral range (32768-60999), so an outgoing connection never
takes one between now and the daemon's bind, and far from Slurm's defaults (6817-6819) and MariaDB's (3306).
A port counts as free when it can be bound on every address (the daemons bind 0.0.0.0 or 127.0.0.1).
All sockets are held until every port is chosen, so the N ports differ.
Usage: freeports.py N [EXCLUDED_PORT...]
"""

from __future__ import annotations

import random
import socket
import sys


def main() -> int:
    count = int(sys.argv[1])
    excluded = {int(p) for p in sys.argv[2:]}
    held: list[socket.socket] = []
    ports: list[int] = []
    rng = random.SystemRandom()
    try:
        for _ in range(2000):
            if len(ports) == count:
                break
            port = rng.randint(20000, 32767)
            if port in excluded or port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    if len(ports) < count:
        print(f"freeports.py: found only {len(ports)} of {count} free ports", file=sys.stderr)
        return 1
    print("\n".join(str(p) for p in ports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
