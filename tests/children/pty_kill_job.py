"""`kill -INT %1` from an interactive shell, as a user at a terminal sends it: bash on a new
pseudo-terminal starts "$CREDWRAP" -- sh -c "$CHILD_SCRIPT" as background job %1; once the
command prints `ready`, this types `kill -INT %1` (a signal to the whole job's process group);
once it prints `int-1`, this sends SIGUSR1 to credwrap from outside the terminal's groups, a
signal credwrap forwards: anything it forwarded before would have reached the command first.
Then it types `exit`. Echoes every line the terminal showed.
"""
import os
import pty
import signal

from ptylines import terminal_lines

pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "$ "
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])

os.write(fd, b'"$CREDWRAP" -- sh -c "$CHILD_SCRIPT" & echo "credwrap=$!"\n')
credwrap = None
for text in terminal_lines(fd, seconds=60):
    if text.startswith("credwrap="):
        credwrap = int(text.split("=")[1])
    if text.endswith("ready"):
        os.write(fd, b"kill -INT %1\n")
    if text.endswith("int-1") and credwrap:
        os.kill(credwrap, signal.SIGUSR1)
    if "usr1-after-" in text:
        os.write(fd, b"wait; exit\n")
os.waitpid(pid, 0)
