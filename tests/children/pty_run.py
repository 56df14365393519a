"""Runs a command on a new pseudo-terminal, as a user at a terminal would.

Types Ctrl-C once the command prints `ready`, then, once it prints `int-1`, sends SIGUSR1 to the
command's process (credwrap) from a process of a session of its own: one credwrap forwards (from
its parent's process group it would not: at a terminal that is how a whole job is signalled).
Echoes every line it reads, then `exit=<status>`.
"""
import os
import pty
import subprocess
import sys

from ptylines import terminal_lines

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

typed = sent = False
for text in terminal_lines(fd):
    if text.endswith("ready") and not typed:
        os.write(fd, b"\x03")
        typed = True
    if text.endswith("int-1") and not sent:
        subprocess.run(["setsid", "kill", "-USR1", str(pid)], check=True)
        sent = True
_, status = os.waitpid(pid, 0)
print(f"exit={os.waitstatus_to_exitcode(status)}", flush=True)
