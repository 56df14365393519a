#!/bin/sh
# Runs every real-SDK child in turn under one credwrap; each line of output is prefixed with the
# SDK's name. The interpreters and binaries come from the environment the test sets: PYTHON,
# AWS_CLI, NODE_MODULES, RUST_CHILD, GO_CHILD, PYTHON_OLD, AWS_CLI_OLD, AWS_CLI_V2, CHILDREN, and
# optionally PYTHON_128.
# SDKs that predate AWS_ENDPOINT_URL_STS get the test's STS as an explicit endpoint.

# A container-relative URI would send an SDK to 169.254.170.2: never let one through to them
# (unless the test put them in a container whose credwrap listens there: CONTAINER=1).
if [ -n "$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" ] && [ "$CONTAINER" != 1 ]; then
    echo "leak: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI reached the child"
    exit 99
fi

status=0
run() {
    name=$1
    shift
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" | sed "s/^/$name: /"
    [ "$rc" -eq 0 ] || { echo "$name: exit=$rc"; status=1; }
}

cli_whoami() {
    arn=$("$@" --endpoint-url "$AWS_ENDPOINT_URL_STS" sts get-caller-identity --query Arn --output text) && echo "arn=$arn"
}

run boto3 "$PYTHON" "$CHILDREN/whoami.py"
run awscli cli_whoami "$AWS_CLI"
run js env NODE_PATH="$NODE_MODULES" AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING=1 node "$CHILDREN/whoami.cjs"
run rust "$RUST_CHILD"
run go "$GO_CHILD"
run boto3-1.17 "$PYTHON_OLD" "$CHILDREN/whoami.py"
run awscli-1.19 cli_whoami "$AWS_CLI_OLD"
run awscli-v2-debian cli_whoami "$AWS_CLI_V2"
# Only where the test asks for it (the container tests).
[ -z "$PYTHON_128" ] || run boto3-1.28 "$PYTHON_128" "$CHILDREN/whoami.py"
exit $status
