"""The demo's child job: an unmodified boto3 program, plus the AWS CLI, run under credwrap."""
import os
import subprocess
import sys

import boto3

session = boto3.Session()
creds = session.get_credentials()
frozen = creds.get_frozen_credentials()
print(f"job: boto3 found credentials via '{creds.method}' (key {frozen.access_key[:8]}...)")
print(f"job: they expire at {creds._expiry_time:%Y-%m-%d %H:%M:%S %Z}; boto3 re-fetches them by itself")
print(f"job: running as {session.client('sts').get_caller_identity()['Arn']}")
leaked = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if k in os.environ]
print(f"job: source keys visible to the job: {leaked or 'none'}")
aws = os.path.join(os.path.dirname(sys.executable), "aws")
out = subprocess.run([aws, "sts", "get-caller-identity", "--query", "Arn", "--output", "text"],
                     check=True, capture_output=True, text=True)
print(f"job: the AWS CLI runs as {out.stdout.strip()}")
sys.exit(int(os.environ.get("DEMO_EXIT", "0")))
