#!/bin/sh
# Installs credwrap: downloads the release for this machine, checks it against the release's
# SHA256SUMS, and installs the binary into ~/.local/bin (/usr/local/bin as root).
#
#   curl -fsSL https://github.com/credwrap/credwrap/releases/latest/download/install.sh | sh
#
# Settings, from the environment:
#   CREDWRAP_RELEASE_URL   where the release's files are (default: the latest GitHub release;
#                          a mirror, or .../releases/download/vX.Y.Z for one version)
#   CREDWRAP_INSTALL_DIR   where to put the binary
# A checksum that does not match is refused, and nothing is left behind. POSIX sh, curl or wget.
set -eu

base="${CREDWRAP_RELEASE_URL:-https://github.com/credwrap/credwrap/releases/latest/download}"

say() { printf 'credwrap install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "$(uname -s)" in
    Linux) ;;
    *) die "credwrap runs on Linux; this is $(uname -s)" ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no release for $(uname -m); build from source: cargo install --locked credwrap" ;;
esac
# The binary is static: the same one runs with glibc (any version), musl (Alpine) or no libc.
target="$arch-unknown-linux-gnu"

if [ -n "${CREDWRAP_INSTALL_DIR:-}" ]; then
    dir="$CREDWRAP_INSTALL_DIR"
elif [ "$(id -u)" -eq 0 ]; then
    dir=/usr/local/bin
else
    dir="${HOME:?HOME is not set: set CREDWRAP_INSTALL_DIR}/.local/bin"
fi

if command -v curl >/dev/null 2>&1; then
    fetch() { curl -fsSL --retry 3 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q -O "$2" "$1"; }
else
    die "needs curl or wget"
fi
if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "needs sha256sum or shasum"
fi

tmp="$(mktemp -d)"
new=""
trap 'rm -rf "$tmp"; [ -z "$new" ] || rm -f "$new"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

fetch "$base/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $base/SHA256SUMS"
line="$(grep -E "^[0-9a-f]{64}  credwrap-[^ ]+-$target\.tar\.gz$" "$tmp/SHA256SUMS" | head -n 1 || true)"
[ -n "$line" ] || die "$base/SHA256SUMS lists no tarball for $target"
want="${line%%  *}"
tarball="${line#*  }"
fetch "$base/$tarball" "$tmp/$tarball" || die "cannot download $base/$tarball"
got="$(sha256 "$tmp/$tarball")"
if [ "$got" != "$want" ]; then
    die "checksum mismatch for $tarball (SHA256SUMS says $want, the download is $got): refusing to install it"
fi

tar -xzf "$tmp/$tarball" -C "$tmp"
unpacked="$tmp/${tarball%.tar.gz}"
[ -x "$unpacked/credwrap" ] || die "$tarball holds no credwrap binary"
mkdir -p "$dir"
if [ -d "$dir/credwrap" ]; then
    die "$dir/credwrap is a directory: move it away, or set CREDWRAP_INSTALL_DIR"
fi
# Into place in one rename, so that a credwrap already running from there keeps its file. The
# new file is one mktemp creates (O_EXCL: never a link or a file someone planted there).
new="$(mktemp "$dir/.credwrap.new.XXXXXXXX")" || die "cannot create a file in $dir"
cat "$unpacked/credwrap" > "$new"
chmod 0755 "$new"
mv -f "$new" "$dir/credwrap"
new=""
[ -f "$dir/credwrap" ] && [ -x "$dir/credwrap" ] || die "$dir/credwrap was not installed"
say "installed $("$dir/credwrap" --version) in $dir"
case ":$PATH:" in
    *":$dir:"*) ;;
    *) say "$dir is not on PATH: add it, e.g. export PATH=\"$dir:\$PATH\"" ;;
esac
