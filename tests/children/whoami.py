"""A real-SDK child: prints the identity boto3 resolves on its own, as `arn=<Arn>`.

It changes nothing in boto3's credential lookup; whatever the environment gives it wins. The STS
endpoint is passed explicitly, since boto3 before 1.28 does not read AWS_ENDPOINT_URL_STS.
"""
import os

import boto3

session = boto3.Session()
creds = session.get_credentials()
print(f"method={creds.method}", flush=True)
sts = session.client("sts", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_STS"))
arn = sts.get_caller_identity()["Arn"]
print(f"arn={arn}", flush=True)
