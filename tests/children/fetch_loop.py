"""An SDK fetching its container credential again and again, each time on a fresh connection, as
botocore does when it refreshes: prints the endpoint, waits for a line on stdin, then fetches
every FETCH_EVERY seconds for FETCH_SECONDS with botocore's own fetcher (its timeout and its
retries), and prints one line per fetch: `fetch ms=N attempts=N ok=0|1`, then `done`.
"""
import os
import sys
import time

from botocore.utils import ContainerMetadataFetcher

uri = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
print(f"{uri} {token}", flush=True)
sys.stdin.readline()

every = float(os.environ.get("FETCH_EVERY", "0.5"))
deadline = time.monotonic() + float(os.environ.get("FETCH_SECONDS", "10"))
while time.monotonic() < deadline:
    tick = time.monotonic()
    # A new fetcher has a new connection pool: no kept-alive connection to reuse.
    fetcher = ContainerMetadataFetcher()
    attempts = 0
    get = fetcher._get_response

    def counted(*args, **kwargs):
        global attempts
        attempts += 1
        return get(*args, **kwargs)

    fetcher._get_response = counted
    started = time.monotonic()
    try:
        creds = fetcher.retrieve_full_uri(uri, headers={"Authorization": token})
        ok = 1 if creds.get("AccessKeyId") else 0
    except Exception as e:  # printed for the test's log, counted as a failure
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        ok = 0
    took = (time.monotonic() - started) * 1000
    print(f"fetch ms={took:.1f} attempts={attempts} ok={ok}", flush=True)
    time.sleep(max(0.0, every - (time.monotonic() - tick)))
print("done", flush=True)
