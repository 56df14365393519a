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
    # Another install in progress (a build beside this one) is waited for, not failed on.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        "${missing[@]}" >/dev/null
}

# The aarch64 build and its emulator, from Debian: the machine's rustup toolchain has no other
# target and none can be fetched here, so Debian's Rust (rustc-web, with the aarch64 standard
# library from the arm64 architecture), its cross gcc and static glibc, and qemu to run it.
ARM64_TARGET=aarch64-unknown-linux-gnu
ensure_arm64_toolchain() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "adding Debian's arm64 architecture (for the aarch64 standard library)"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo dpkg --add-architecture arm64
        # apt_install updates the lists only when something is missing, which it now is.
    fi
    apt_install rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross qemu-user-static
}

# Lets the kernel run aarch64 binaries through qemu (binfmt_misc; its F flag opens qemu now, so
# that a chroot without it still runs them): the release tests run the aarch64 build as they run
# the host's, in an empty root and from the installer. Root only; an entry the machine already
# has is kept.
ensure_arm64_emulation() {
    local entry=/proc/sys/fs/binfmt_misc
    [ -e "$entry/qemu-aarch64" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: aarch64 binaries cannot be registered with binfmt_misc (the aarch64 release tests skip)"
        return 0
    fi
    [ -e "$entry/register" ] || mount -t binfmt_misc binfmt_misc "$entry"
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$entry/register"
    log "aarch64 binaries now run through qemu-aarch64 (binfmt_misc)"
}

# Runs cargo ARGS with Debian's Rust for the aarch64 target (its cross linker and C compiler for
# ring), as scripts/release and the tests build it.
arm64_cargo() {
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
        /usr/bin/cargo "$@"
}

ensure_toolchain() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
}

# cargo-nextest runs the tests side by side, one process each. Machines made for this project
# have it; elsewhere it is built once into .deps/cargo.
ensure_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        return 0
    fi
    export PATH="$DEPS/cargo/bin:$PATH"
    if cargo nextest --version >/dev/null 2>&1; then
        return 0
    fi
    log "installing cargo-nextest into .deps/cargo (once)"
    cargo install --locked --root "$DEPS/cargo" cargo-nextest
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

# The flags of a release build of the checkout at SRC: static (glibc linked in), and no path of
# this machine's in the binary (the checkout and cargo's home are renamed in the debug strings
# that survive stripping), so that the same commit gives the same bytes anywhere.
release_rustflags() {
    local src="$1" cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    echo "-C target-feature=+crt-static --remap-path-prefix=$src=/credwrap --remap-path-prefix=$cargo_home=/cargo"
}

host_target() {
    rustc -vV | sed -n 's/^host: //p'
}

# Where cargo puts build output: target/, or CARGO_TARGET_DIR, or build.target-dir.
target_dir() {
    cargo metadata --no-deps --format-version 1 \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Starts a Docker daemon of the tests' own (Debian's docker.io; there is no systemd), with its
# state under .deps/docker and every address it makes off the private ranges, and with no
# iptables rules at all: containers reach the host's addresses over their bridge, nothing
# beyond the machine. Exports DOCKER_HOST; stop_dockerd undoes it.
start_dockerd() {
    apt_install docker.io docker-compose
    # runc refuses a root file system reached through a symlink: the real path.
    local dir
    mkdir -p "$DEPS/docker"
    dir="$(cd "$DEPS/docker" && pwd -P)"
    DOCKERD_SOCK="$dir/docker.sock"
    cat > "$dir/daemon.json" <<JSON
{
  "hosts": ["unix://$DOCKERD_SOCK"],
  "data-root": "$dir/data",
  "exec-root": "$dir/exec",
  "pidfile": "$dir/docker.pid",
  "bip": "198.19.0.1/24",
  "default-address-pools": [{"base": "198.18.0.0/16", "size": 24}],
  "dns": ["127.0.0.1"],
  "iptables": false,
  "ip-forward": false,
  "ip-masq": false
}
JSON
    export DOCKER_HOST="unix://$DOCKERD_SOCK"
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    log "starting dockerd (state in .deps/docker)"
    dockerd --config-file "$dir/daemon.json" >"$dir/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local i
    for i in $(seq 1 300); do
        if docker info >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    tail -n 30 "$dir/dockerd.log" >&2
    echo "dockerd did not start: the Docker tests need it (see .deps/docker/dockerd.log)" >&2
    return 1
}

stop_dockerd() {
    [ -n "${DOCKERD_PID:-}" ] || return 0
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    # What a daemon that did not finish its shutdown leaves mounted, and its bridge.
    local dir
    dir="$(cd "$DEPS/docker" && pwd -P)"
    umount "$dir/exec/netns/default" 2>/dev/null || true
    umount "$dir/data" 2>/dev/null || true
    ip link del docker0 2>/dev/null || true
    DOCKERD_PID=""
}
