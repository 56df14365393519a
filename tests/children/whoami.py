"""A real-SDK child: prints the identity boto3 resolves on its own, as `arn=<Arn>`.

It changes nothing in boto3's credential lookup; whatever the environment gives it wins.
"""
import boto3

session = boto3.Session()
creds = session.get_credentials()
print(f"method={creds.method}", flush=True)
arn = session.client("sts").get_caller_identity()["Arn"]
print(f"arn={arn}", flush=True)
