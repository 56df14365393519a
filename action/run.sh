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

# An input, as @actions/core's getInput reads it: INPUT_<NAME> (the name upper-cased, dashes
# kept), trimmed. Only `roles` may hold line breaks: in any other input one is refused, since a
# line break is how a value would start a workflow command in the job's log.
input() {
    local value
    value="$(printenv "INPUT_$1" || true)"
    value="${value#"${value%%[![:space:]]*}"}"
    value="${value%"${value##*[![:space:]]}"}"
    if [ "$1" != ROLES ] && [[ "$value" == *$'\n'* || "$value" == *$'\r'* ]]; then
        die "the $(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') input holds a line break: give it on one line"
    fi
    printf '%s' "$value"
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
    local role bin max audience name value log env_before pid
    role="$(input ROLE-ARN)"
    [ -n "$role" ] || die "the role-arn input is required"
    bin="$(find_credwrap)"
    say "using $("$bin" --version)"
    max="$(input MAX-LIFETIME)"
    # Each use of the action has a log of its own: a job may use it twice (two roles, a matrix).
    log="$(mktemp "$temp/credwrap-XXXXXX.log")"
    local args=(-v --serve --detach --export github --role-arn "$role" --log-file "$log"
        --watch "${CREDWRAP_ACTION_WATCH:-$PPID}" --max-lifetime "${max:-6h}")
    local source
    source="$(input TOKEN-SOURCE)"
    case "$source" in
        "" | github)
            args+=(--web-identity-github)
            audience="$(input AUDIENCE)"
            [ -z "$audience" ] || args+=(--web-identity-audience "$audience")
            ;;
        job) ;; # whatever the job already has: keys from an earlier step, a profile
        *) die "token-source is github or job, not $source" ;;
    esac
    for name in ROLE-SESSION-NAME DURATION REGION; do
        value="$(input "$name")"
        [ -z "$value" ] || args+=("--$(echo "$name" | tr '[:upper:]' '[:lower:]')" "$value")
    done
    value="$(input TOKEN-FILE)"
    [ "$value" != true ] || args+=(--token-file)
    # Extra roles, one NAME=ARN a line; later steps select one as a profile (AWS_PROFILE=NAME).
    local line roles
    roles="$(input ROLES)"
    while IFS= read -r line; do
        line="${line#"${line%%[![:space:]]*}"}"
        line="${line%"${line##*[![:space:]]}"}"
        case "$line" in
            "" | "#"*) ;;
            *) args+=(--role "$line") ;;
        esac
    done <<< "$roles"
    # credwrap appends to $GITHUB_ENV and masks the endpoint's token on stdout; it returns once
    # it serves, or fails with its own message.
    env_before="$(wc -c < "${GITHUB_ENV:?GITHUB_ENV is not set: this runs in a GitHub Actions job}")"
    "$bin" "${args[@]}"
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
    local log="${STATE_CREDWRAP_LOG:-${CREDWRAP_LOG_FILE:-}}"
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
