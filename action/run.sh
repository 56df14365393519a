#!/usr/bin/env bash
# The credwrap GitHub Action's logic: action.yml's main.js runs `run.sh start`, its post.js
# `run.sh stop`; the tests run this script directly, with the variables a runner sets.
#
# start: finds credwrap (the `credwrap` input, else one on PATH, else the release's, checked
#        against its SHA256SUMS, else built from this action's source), then starts it in
#        whole-job mode: detached, the job's OIDC token as the source (renewed at every
#        refresh), the endpoint's variables appended to $GITHUB_ENV for every later step.
# stop:  stops it (SIGTERM: it revokes the credentials and removes its files) and prints its
#        log in a folded group.
set -euo pipefail
# A failure inside $(...) (find_credwrap's install or build) ends the script, not just the
# substitution.
shopt -s inherit_errexit

# An input, as @actions/core's getInput reads it: INPUT_<NAME> (the name upper-cased, dashes
# kept), trimmed. Only the lists (`roles`, `managed-session-policies`) may hold line breaks, and
# a policy's JSON, whose line breaks become spaces: in any other input one is refused, since a
# line break is how a value would start a workflow command in the job's log.
input() {
    local value
    value="$(printenv "INPUT_$1" || true)"
    value="${value#"${value%%[![:space:]]*}"}"
    value="${value%"${value##*[![:space:]]}"}"
    case "$1" in
        ROLES | MANAGED-SESSION-POLICIES) ;;
        INLINE-SESSION-POLICY) value="${value//[$'\r\n']/ }" ;;
        *)
            if [[ "$value" == *$'\n'* || "$value" == *$'\r'* ]]; then
                die "the $(lower "$1") input holds a line break: give it on one line"
            fi
            ;;
    esac
    printf '%s' "$value"
}
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }
# An input that configure-aws-credentials names ALIAS: either name, so that switching is a
# one-word change; both given must agree.
either() {
    local ours theirs
    ours="$(input "$1")"
    theirs="$(input "$2")"
    if [ -n "$ours" ] && [ -n "$theirs" ] && [ "$ours" != "$theirs" ]; then
        die "the $(lower "$1") and $(lower "$2") inputs are one input under two names, and they differ: give one"
    fi
    printf '%s' "${ours:-$theirs}"
}
# The non-empty lines of a list input, trimmed, without `#` comments.
lines_of() {
    local line
    while IFS= read -r line; do
        line="${line#"${line%%[![:space:]]*}"}"
        line="${line%"${line##*[![:space:]]}"}"
        case "$line" in
            "" | "#"*) ;;
            *) printf '%s\n' "$line" ;;
        esac
    done <<< "$1"
}
say() { printf 'credwrap action: %s\n' "$*" >&2; }
# As the toolkit escapes data in a workflow command: %, CR and LF, so that a value can neither
# end the command nor start another. On stderr, which the runner reads for commands too, so
# that it reaches the log even from inside a command substitution.
escape() {
    local s="$*"
    s="${s//'%'/%25}"
    s="${s//$'\r'/%0D}"
    s="${s//$'\n'/%0A}"
    printf '%s' "$s"
}
die() { printf '::error title=credwrap::%s\n' "$(escape "$*")" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
temp="${RUNNER_TEMP:?RUNNER_TEMP is not set: this runs in a GitHub Actions job}"

find_credwrap() {
    local given
    given="$(input CREDWRAP)"
    if [ -n "$given" ]; then
        [ -x "$given" ] || die "the credwrap input names $given, which is not an executable file"
        echo "$given"
        return
    fi
    if command -v credwrap >/dev/null 2>&1; then
        command -v credwrap
        return
    fi
    local version url dir="$temp/credwrap-bin"
    version="$(input VERSION)"
    # A version and nothing else: a value with a slash would make a URL into another
    # repository's releases.
    if [ -n "$version" ] && [ "$version" != latest ] \
        && ! [[ "$version" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]]; then
        die "the version input is a release version such as 0.2.0 (or latest), not $version"
    fi
    if [ -n "$version" ] && [ "$version" != latest ]; then
        url="https://github.com/credwrap/credwrap/releases/download/v${version#v}"
    else
        url="https://github.com/credwrap/credwrap/releases/latest/download"
    fi
    if CREDWRAP_RELEASE_URL="${CREDWRAP_RELEASE_URL:-$url}" CREDWRAP_INSTALL_DIR="$dir" \
        sh "$here/scripts/install.sh" >&2; then
        echo "$dir/credwrap"
        return
    fi
    say "no release to install: building credwrap from the action's source"
    command -v cargo >/dev/null 2>&1 || die "no credwrap release could be installed and there is no cargo to build one"
    cargo install --quiet --locked --path "$here" --root "$temp/credwrap-cargo" >&2
    echo "$temp/credwrap-cargo/bin/credwrap"
}

start() {
    local role bin max audience name value log env_before pid region chaining
    role="$(either ROLE-ARN ROLE-TO-ASSUME)"
    [ -n "$role" ] || die "the role-arn input (or role-to-assume) is required"
    value="$(input OUTPUT-CREDENTIALS)"
    if [ "$value" = true ]; then
        die "output-credentials: credwrap hands later steps credentials that refresh, not keys that expire in an hour; a step that needs the keys themselves can run \`aws configure export-credentials --format env\`"
    fi
    # Every later SDK call needs a region: the input's, else the one the job already has.
    region="$(either REGION AWS-REGION)"
    if [ -z "$region" ] && [ -z "${AWS_REGION:-}" ] && [ -z "${AWS_DEFAULT_REGION:-}" ]; then
        die "the region input (or aws-region) is required: the later steps' SDKs need one (or set AWS_REGION in the job's env)"
    fi
    value="$(input MASK-AWS-ACCOUNT-ID)"
    if [ "$value" = true ]; then
        # Before credwrap says anything: the role's ARN carries the account.
        printf '::add-mask::%s\n' "$(escape "$(printf '%s' "$role" | cut -d: -f5)")"
    fi
    bin="$(find_credwrap)"
    say "using $("$bin" --version)"
    max="$(input MAX-LIFETIME)"
    # Each use of the action has a log of its own: a job may use it twice (two roles, a matrix).
    log="$(mktemp "$temp/credwrap-XXXXXX.log")"
    local args=(-v --serve --detach --export github --role-arn "$role" --log-file "$log"
        --watch "${CREDWRAP_ACTION_WATCH:-$PPID}" --max-lifetime "${max:-6h}")
    [ -z "$region" ] || args+=(--region "$region")
    local source
    source="$(input TOKEN-SOURCE)"
    chaining="$(input ROLE-CHAINING)"
    if [ "$chaining" = true ]; then
        [ "$source" != github ] || die "role-chaining assumes the role from the credentials the job already has; token-source github says the job's OIDC token: give one"
        source=job
    fi
    # What credwrap is started without: with `job`, the job's OIDC token service, so that it
    # assumes the role from what the job already has and never from the token by itself.
    local without=()
    case "$source" in
        "" | github)
            args+=(--web-identity-github)
            audience="$(input AUDIENCE)"
            [ -z "$audience" ] || args+=(--web-identity-audience "$audience")
            ;;
        job) without=(-u ACTIONS_ID_TOKEN_REQUEST_URL -u ACTIONS_ID_TOKEN_REQUEST_TOKEN) ;;
        *) die "token-source is github or job, not $source" ;;
    esac
    value="$(input ROLE-SESSION-NAME)"
    [ -z "$value" ] || args+=(--role-session-name "$value")
    value="$(either DURATION ROLE-DURATION-SECONDS)"
    [ -z "$value" ] || args+=(--duration "$value")
    value="$(input ROLE-EXTERNAL-ID)"
    [ -z "$value" ] || args+=(--external-id "$value")
    value="$(input INLINE-SESSION-POLICY)"
    [ -z "$value" ] || args+=(--policy "$value")
    local line list
    list="$(lines_of "$(input MANAGED-SESSION-POLICIES)")"
    while IFS= read -r line; do
        [ -z "$line" ] || args+=(--policy-arn "$line")
    done <<< "$list"
    value="$(input TOKEN-FILE)"
    [ "$value" != true ] || args+=(--token-file)
    # Extra roles, one NAME=ARN a line; later steps select one as a profile (AWS_PROFILE=NAME).
    list="$(lines_of "$(input ROLES)")"
    while IFS= read -r line; do
        [ -z "$line" ] || args+=(--role "$line")
    done <<< "$list"
    # credwrap appends to $GITHUB_ENV, sets the outputs aws-account-id and authenticated-arn
    # in $GITHUB_OUTPUT, and masks the endpoint's token on stdout; it returns once it serves,
    # or fails with its own message.
    env_before="$(wc -c < "${GITHUB_ENV:?GITHUB_ENV is not set: this runs in a GitHub Actions job}")"
    env "${without[@]}" "$bin" "${args[@]}"
    # This use's credwrap and log, for this use's post step alone: $GITHUB_STATE comes back to
    # the same action instance as STATE_*, where the job-wide CREDWRAP_PID is the last use's.
    pid="$(tail -c "+$((env_before + 1))" "$GITHUB_ENV" | sed -n 's/^CREDWRAP_PID=//p' | tail -n 1)"
    if [ -n "${GITHUB_STATE:-}" ]; then
        printf 'CREDWRAP_PID=%s\nCREDWRAP_LOG=%s\n' "$pid" "$log" >> "$GITHUB_STATE"
    fi
}

stop() {
    # This use's own credwrap (see start); a runner without $GITHUB_STATE has only the job's.
    local pid="${STATE_CREDWRAP_PID:-${CREDWRAP_PID:-}}"
    local log="${STATE_CREDWRAP_LOG:-${CREDWRAP_LOG_PATH:-}}"
    if [ -z "$pid" ]; then
        say "credwrap was not started: nothing to stop"
        return 0
    fi
    if kill -TERM "$pid" 2>/dev/null; then
        # Revoking and removing its files takes it a moment.
        local i
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && say "credwrap ($pid) is still running after SIGTERM"
    fi
    if [ -n "$log" ] && [ -f "$log" ]; then
        echo "::group::credwrap log"
        cat "$log"
        echo "::endgroup::"
        rm -f "$log"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: run.sh start|stop" >&2; exit 2 ;;
esac
