"""Runs a command on a new pseudo-terminal and answers one prompt, as a user would type it.

Waits for the text in $PROMPT on the terminal, types $ANSWER and Enter, echoes everything the
terminal shows, and ends with `exit=<status>`.
"""
import os
import pty
import sys

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

prompt = os.environ["PROMPT"].encode()
answered = False
seen = b""
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    sys.stdout.write(chunk.decode(errors="replace"))
    sys.stdout.flush()
    if not answered and prompt in seen:
        os.write(fd, os.environ["ANSWER"].encode() + b"\n")
        answered = True
_, status = os.waitpid(pid, 0)
print(f"\nexit={os.waitstatus_to_exitcode(status)}", flush=True)
