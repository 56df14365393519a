# Shared by scripts/demo and scripts/test: installs what they need, idempotently.
# Python packages go to .deps/venv (git-ignored); nothing is installed system-wide except
# Debian packages that are missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
VENV="$DEPS/venv"

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_toolchain() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
}

# The venv is rebuilt only when tests/requirements.txt changes.
ensure_python_deps() {
    local req="$ROOT/tests/requirements.txt"
    if [ -x "$VENV/bin/python" ] && cmp -s "$req" "$VENV/.installed-requirements"; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    log "installing Python test dependencies into .deps/venv"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$VENV/.installed-requirements"
}

# The JS SDK child's packages, from tests/js's lockfile, into .deps/js (rebuilt when it changes).
ensure_node_deps() {
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
    local lock="$ROOT/tests/js/package-lock.json"
    if [ -d "$DEPS/js/node_modules/@aws-sdk/client-sts" ] && cmp -s "$lock" "$DEPS/js/package-lock.json"; then
        return 0
    fi
    log "installing JavaScript test dependencies into .deps/js"
    rm -rf "$DEPS/js"
    mkdir -p "$DEPS/js"
    cp "$ROOT/tests/js/package.json" "$lock" "$DEPS/js/"
    (cd "$DEPS/js" && npm ci --no-audit --no-fund --loglevel=error)
}

# Starts moto's STS (scripts/moto_sts.py) on an ephemeral loopback port; sets MOTO_PID and
# MOTO_URL. It serves until killed, or until this shell exits and closes its stdin.
start_moto() {
    coproc MOTO { exec "$VENV/bin/python" "$ROOT/scripts/moto_sts.py" 2>"$DEPS/moto.log"; }
    if ! read -r -t 60 MOTO_URL <&"${MOTO[0]}"; then
        cat "$DEPS/moto.log" >&2
        echo "moto did not start within 60 s" >&2
        exit 1
    fi
}

# Where cargo puts build output: target/, or CARGO_TARGET_DIR, or build.target-dir.
target_dir() {
    cargo metadata --no-deps --format-version 1 \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
