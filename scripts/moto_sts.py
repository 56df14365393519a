"""moto's server (a third-party STS nobody here wrote) on an ephemeral port of 127.0.0.1.

Prints its URL, `http://127.0.0.1:PORT`, as the first line on stdout once it accepts
connections, then serves until SIGTERM/SIGINT, or until its stdin closes when stdin is a pipe
(so it never outlives whoever started it). Used by the tests, scripts/demo and scripts/bench.
"""
import os
import signal
import stat
import sys
import threading

from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)

done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
signal.signal(signal.SIGINT, lambda *_: done.set())
if stat.S_ISFIFO(os.fstat(0).st_mode):
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
done.wait()
server.stop()
