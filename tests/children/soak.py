"""A real-SDK child for refresh tests: calls STS continuously and reports what it saw.

botocore re-fetches a container credential 15 minutes (advisory) and 10 minutes (mandatory)
before it expires. Test credentials live seconds, so both windows are scaled in the same
proportion to SOAK_LIFETIME as 15 and 10 minutes are to an hour. Nothing else is changed.

Stops once SOAK_KEYS distinct access keys were used (if set) or SOAK_SECONDS passed; prints
`ready` after its first successful call, then one `keys=N calls=N errors=N` line at the end, and
exits 1 if any call failed.
"""
import os
import sys
import time

import boto3
from botocore import credentials as bc

lifetime = float(os.environ["SOAK_LIFETIME"])
bc.RefreshableCredentials._advisory_refresh_timeout = lifetime * 15 / 60
bc.RefreshableCredentials._mandatory_refresh_timeout = lifetime * 10 / 60

want_keys = int(os.environ.get("SOAK_KEYS", "0")) or None
deadline = time.monotonic() + float(os.environ.get("SOAK_SECONDS", "60"))
session = boto3.Session()
sts = session.client("sts")
creds = session.get_credentials()
keys, calls, errors = set(), 0, 0
while (want_keys is None or len(keys) < want_keys) and time.monotonic() < deadline:
    try:
        key = creds.get_frozen_credentials().access_key
        arn = sts.get_caller_identity()["Arn"]
        if ":assumed-role/" not in arn:
            raise RuntimeError(f"wrong identity {arn}")
        if not keys:
            print("ready", flush=True)
        keys.add(key)
    except Exception as e:  # every failure counts; print it for the test log
        errors += 1
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    calls += 1
    time.sleep(0.02)
print(f"keys={len(keys)} calls={calls} errors={errors}", flush=True)
sys.exit(1 if errors else 0)
