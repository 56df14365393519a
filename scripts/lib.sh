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

# The old botocore lane (tests/requirements-old.txt) into .deps/venv-old, and boto3 1.28 (the
# first version measured to accept a full container URI on 169.254.170.2) into
# .deps/venv-boto3-1.28; each rebuilt when its requirements change.
ensure_old_python_deps() {
    ensure_venv "$ROOT/tests/requirements-old.txt" "$DEPS/venv-old"
    ensure_venv "$ROOT/tests/requirements-boto3-1.28.txt" "$DEPS/venv-boto3-1.28"
}

ensure_venv() {
    local req="$1" venv="$2"
    if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/.installed-requirements"; then
        return 0
    fi
    log "installing $(basename "$req") into ${venv#"$ROOT"/}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    local pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
    if grep -q '^awscli==1\.19' "$req"; then
        # awscli 1.19 pins PyYAML 5.4.1, which has no wheel for this Python and does not build
        # with Cython 3: build it against an older Cython, without build isolation.
        "${pip[@]}" "cython<3" wheel "setuptools<70"
        "${pip[@]}" --no-build-isolation "pyyaml==5.4.1"
    fi
    "${pip[@]}" -r "$req"
    cp "$req" "$venv/.installed-requirements"
}

# The Go SDK v2 child, built offline from Debian's packaged sources (GOPATH mode), and the AWS
# CLI v2 that Debian packages: both are what people get from apt.
ensure_debian_sdks() {
    apt_install golang-go golang-github-aws-aws-sdk-go-v2-dev awscli
    local src="$ROOT/tests/children/go/whoami.go" bin="$DEPS/go/whoami"
    if [ -x "$bin" ] && cmp -s "$src" "$DEPS/go/whoami.go.built"; then
        return 0
    fi
    log "building the Go SDK v2 child into .deps/go"
    mkdir -p "$DEPS/go"
    (cd "$ROOT/tests/children/go" && GO111MODULE=off GOPATH="$DEPS/go/path:/usr/share/gocode" \
        GOCACHE="$DEPS/go/cache" go build -o "$bin" .)
    cp "$src" "$DEPS/go/whoami.go.built"
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
