"""A token command, as `buildkite-agent oidc request-token` is one: prints a fresh JWT-shaped
OIDC token (issuer OIDC_ISSUER, lifetime OIDC_TTL seconds, a `sub` that counts up in
OIDC_COUNTER) and exits 0; while the file OIDC_FAIL exists it fails as an agent that cannot reach
its server does: a message on stderr, exit 1.
"""
import base64
import json
import os
import sys
import time


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


if os.path.exists(os.environ["OIDC_FAIL"]):
    print("agent: could not reach the OIDC endpoint (connection refused)", file=sys.stderr)
    sys.exit(1)
counter = os.environ["OIDC_COUNTER"]
n = int(open(counter).read() or "0") + 1 if os.path.exists(counter) else 1
with open(counter, "w") as f:
    f.write(str(n))
now = int(time.time())
claims = {
    "iss": os.environ["OIDC_ISSUER"],
    "sub": f"organization:acme:pipeline:deploy:token-{n}",
    "aud": "sts.amazonaws.com",
    "iat": now,
    "exp": now + int(os.environ.get("OIDC_TTL", "300")),
}
header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
print(f"{header}.{b64(json.dumps(claims).encode())}.{b64(b'sig')}")
