"""Job control at a terminal, as a user has it: an interactive bash on a new pseudo-terminal
runs "$CREDWRAP" -- sh -c "$CHILD_SCRIPT". Once the command prints `pid=N`, this types Ctrl-Z,
checks that credwrap and process N are both stopped, types `fg`, waits until they run again,
types a line for the command to read, then `exit`. Prints `stopped=<both stopped>`,
`resumed=<both running>`, and every line the terminal showed.
"""
import os
import pty
import sys
import time

from ptylines import terminal_lines

pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "$ "
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])


def state(p):
    try:
        return open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def credwrap_pid(child):
    try:
        return int(open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def wait_until(pred):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not pred():
        time.sleep(0.02)
    return pred()


os.write(fd, b'"$CREDWRAP" -- sh -c "$CHILD_SCRIPT"\n')
for text in terminal_lines(fd, seconds=60):
    if text.startswith("pid="):
        child = int(text.split("=")[1])
        wrapper = credwrap_pid(child)
        os.write(fd, b"\x1a")
        stopped = wait_until(lambda: state(wrapper) == "T" and state(child) == "T")
        print(f"stopped={stopped}", flush=True)
        os.write(fd, b"fg\n")
        resumed = wait_until(lambda: state(wrapper) not in "T?" and state(child) not in "T?")
        print(f"resumed={resumed}", flush=True)
        os.write(fd, b"go\n")
    if text.startswith("read-"):
        os.write(fd, b"exit\n")
os.waitpid(pid, 0)
