"""Shared by the pty_* test children: the lines a terminal shows, as they arrive."""
import os
import time


def terminal_lines(fd, seconds=None):
    """Yields each line read from the pty master `fd`, stripped and echoed to stdout, until the
    other side closes (EIO or EOF) or `seconds` have passed."""
    deadline = None if seconds is None else time.monotonic() + seconds
    buf = b""
    while deadline is None or time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the terminal's other side is gone
            return
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace").strip()
            print(text, flush=True)
            yield text
