"""Leaves an orphan behind and counts the zombies its parent (credwrap) has not reaped.

The child double-forks a grandchild that exits at once; with credwrap as subreaper the
grandchild is re-parented to credwrap, which must reap it. Prints `zombies=N`.
"""
import os
import time

if os.fork() == 0:
    if os.fork() == 0:
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(1.0)

parent = os.getppid()
zombies = 0
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if stat[0] == "Z" and int(stat[1]) == parent:
        zombies += 1
print(f"zombies={zombies}", flush=True)
