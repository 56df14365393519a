"""Leaves an orphan behind and reports who adopted it, and whether it was reaped.

The child forks an intermediate process that forks a grandchild and exits at once. The orphaned
grandchild waits until it has been re-parented, writes its new parent's pid to a pipe, and exits.
With credwrap as subreaper the new parent is credwrap (without it, init), which must then reap it.
Prints `orphan_parent=PID credwrap=PID zombies=N`.
"""
import os
import time

credwrap = os.getppid()
r, w = os.pipe()
if os.fork() == 0:
    intermediate = os.getpid()
    if os.fork() == 0:
        os.close(r)
        while os.getppid() == intermediate:
            time.sleep(0.01)
        os.write(w, f"{os.getppid()}\n".encode())
        os._exit(0)
    os._exit(0)
os.close(w)
os.wait()
with os.fdopen(r) as pipe:
    adopted_by = int(pipe.readline())


def zombies_of(parent):
    count = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] == "Z" and int(stat[1]) == parent:
            count += 1
    return count


# The orphan has exited (it closed the pipe); its new parent reaps it on SIGCHLD.
deadline = time.monotonic() + 10
while zombies_of(credwrap) and time.monotonic() < deadline:
    time.sleep(0.02)
print(f"orphan_parent={adopted_by} credwrap={credwrap} zombies={zombies_of(credwrap)}", flush=True)
