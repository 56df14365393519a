"""Records every signal it gets, and never exits on one.

Installs a handler for each catchable signal, prints `ready`, then `got NUMBER` as each signal
arrives; exits 0 when stdin says `report`, after printing `report N,N,...` (every signal seen).
A signal it did not expect therefore shows up in the report instead of ending the process, so no
forwarded signal can hide behind another.
"""
import os
import signal
import sys

seen = []


def record(signum, frame):
    seen.append(signum)
    # os.write, not print: a handler may run in the middle of another print.
    os.write(1, f"got {signum}\n".encode())


for signum in range(1, signal.SIGRTMAX + 1):
    if signum in (signal.SIGKILL, signal.SIGSTOP):
        continue
    try:
        signal.signal(signum, record)
    except (OSError, ValueError):  # the C library's own (32, 33)
        pass

os.write(1, b"ready\n")
for line in sys.stdin:
    if line.strip() == "report":
        os.write(1, ("report " + ",".join(str(s) for s in seen) + "\n").encode())
        sys.exit(0)
