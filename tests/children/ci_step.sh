#!/bin/sh
# One step of a simulated CI job: the SDK named by $1 calls STS GetCallerIdentity again and again
# for $2 seconds, each call in a process of its own (as a step's tools run), and must come back as
# the role every time. Prints `sdk=NAME calls=N errors=N`; the first errors go to stderr.
# The interpreters and binaries come from the environment: PYTHON, AWS_CLI, NODE_MODULES,
# GO_CHILD, CHILDREN; WANT_ROLE names the role (default deploy).
sdk=$1
seconds=$2
one() {
    case "$sdk" in
        awscli) "$AWS_CLI" sts get-caller-identity --query Arn --output text ;;
        js) NODE_PATH="$NODE_MODULES" AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING=1 node "$CHILDREN/whoami.cjs" ;;
        go) "$GO_CHILD" ;;
        boto3) "$PYTHON" "$CHILDREN/whoami.py" ;;
        *) echo "no such SDK: $sdk" >&2; exit 2 ;;
    esac
}
start=$(date +%s)
calls=0
errors=0
while [ $(( $(date +%s) - start )) -lt "$seconds" ]; do
    out=$(one 2>&1)
    calls=$((calls + 1))
    case "$out" in
        *assumed-role/"${WANT_ROLE:-deploy}"/*) ;;
        *)
            errors=$((errors + 1))
            [ "$errors" -le 3 ] && printf '%s: %s\n' "$sdk" "$out" >&2
            ;;
    esac
done
echo "sdk=$sdk calls=$calls errors=$errors"
