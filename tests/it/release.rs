//! What is shipped, tested as shipped: the release tarballs `scripts/release` builds (this
//! machine's and, on x86_64, aarch64's), each static binary run from an empty root, its TLS
//! trust with and without a CA store, and the installer picking each by architecture. The
//! aarch64 binary runs here through qemu's binfmt_misc entry (scripts/lib.sh's
//! ensure_arm64_emulation).
//!
//! `scripts/test` builds the release into .deps/dist (CREDWRAP_DIST) and a static build of the
//! Rust-SDK child (CREDWRAP_STATIC_CHILD). Without them (a plain `cargo test`) these tests skip,
//! except where CREDWRAP_TESTS_STRICT is set (as root, and in CI), where they fail.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::corp_net::CorpNet;
use support::fake_sts::{ROLE_ARN, SOURCE_KEY_ID, SOURCE_SECRET};
use support::{run, Output, Sandbox};

/// The release directory and the static child, or why not.
fn shipped() -> Option<(PathBuf, PathBuf)> {
    let dist = std::env::var_os("CREDWRAP_DIST").map(PathBuf::from);
    let child = std::env::var_os("CREDWRAP_STATIC_CHILD").map(PathBuf::from);
    match (dist, child) {
        (Some(d), Some(c)) if d.join("SHA256SUMS").exists() && c.exists() => Some((d, c)),
        _ => support::skip("no release to test: scripts/test builds one (CREDWRAP_DIST)"),
    }
}

/// The targets `dist` holds a tarball of, from its SHA256SUMS: this machine's first. On x86_64
/// the release must hold aarch64's too.
fn targets(dist: &Path) -> Vec<String> {
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let prefix = format!("credwrap-{}-", env!("CARGO_PKG_VERSION"));
    let mut targets: Vec<String> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, f)| f))
        .filter_map(|f| f.strip_prefix(&prefix)?.strip_suffix(".tar.gz"))
        .map(str::to_string)
        .collect();
    targets.sort_by_key(|t| !t.starts_with(std::env::consts::ARCH));
    assert!(
        targets[0].starts_with(std::env::consts::ARCH),
        "{targets:?}"
    );
    if std::env::consts::ARCH == "x86_64" {
        assert!(
            targets.iter().any(|t| t == "aarch64-unknown-linux-gnu"),
            "no aarch64 build in {}: {targets:?}",
            dist.display()
        );
    }
    targets
}

/// Whether `target`'s binaries run on this machine: its own, or aarch64's through qemu.
fn runs_here(target: &str) -> bool {
    target.starts_with(std::env::consts::ARCH)
        || (target.starts_with("aarch64-")
            && Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists())
        || support::skip::<()>(&format!(
            "{target} binaries do not run here: scripts/test registers qemu-aarch64 with \
             binfmt_misc as root"
        ))
        .is_some()
}

/// `target`'s tarball in `dist`.
fn tarball(dist: &Path, target: &str) -> PathBuf {
    let t = dist.join(format!(
        "credwrap-{}-{target}.tar.gz",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(t.is_file(), "{} missing", t.display());
    t
}

/// `target`'s tarball unpacked into `into`; the directory it holds.
fn unpack(dist: &Path, target: &str, into: &Path) -> PathBuf {
    let t = tarball(dist, target);
    let out = run(Command::new("tar").arg("-xzf").arg(&t).arg("-C").arg(into));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let name = t.file_name().unwrap().to_string_lossy();
    into.join(name.trim_end_matches(".tar.gz"))
}

fn readelf(flag: &str, binary: &Path) -> String {
    let out = run(Command::new("readelf").arg(flag).arg(binary));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    out.stdout
}

#[test]
fn the_tarball_holds_a_static_binary_its_docs_and_matching_checksums() {
    let Some((dist, _)) = shipped() else { return };
    for target in targets(&dist) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = unpack(&dist, &target, tmp.path());
        for file in [
            "credwrap",
            "credwrap.1",
            "complete/credwrap.bash",
            "complete/_credwrap",
            "complete/credwrap.fish",
            "README.md",
            "SECURITY.md",
            "docs/usage.md",
            "docs/ci.md",
            "docs/containers.md",
            "CHANGELOG.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
        ] {
            assert!(dir.join(file).is_file(), "{target}: {file} missing");
        }
        let binary = dir.join("credwrap");
        assert!(!readelf("-l", &binary).contains("program interpreter"));
        assert!(!readelf("-d", &binary).contains("(NEEDED)"));
        let machine = if target.starts_with("aarch64-") {
            "AArch64"
        } else {
            "X86-64"
        };
        assert!(readelf("-h", &binary).contains(machine), "{target}");
        // The man page is the target's own binary's: it names the target.
        let man = std::fs::read_to_string(dir.join("credwrap.1")).unwrap();
        assert!(
            man.contains(&target.replace('-', "\\-")),
            "{target}: man page"
        );
        if !runs_here(&target) {
            continue;
        }
        let version = run(Command::new(&binary).arg("--version"));
        let commit = run(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]));
        for part in [
            env!("CARGO_PKG_VERSION"),
            commit.stdout.trim(),
            &target,
            "static",
        ] {
            assert!(
                version.stdout.contains(part),
                "{part} not in {}",
                version.stdout
            );
        }
        println!("{target}: {}", version.stdout.trim());
    }
    let sums = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dist));
    assert_eq!(sums.code(), Some(0), "{}{}", sums.stdout, sums.stderr);
    assert!(sums.stdout.contains("install.sh: OK"), "{}", sums.stdout);
}

/// A root holding only what a scratch image would: the binary, the child, `/etc/hosts`,
/// `/etc/resolv.conf`, a CA file if given, and `/tmp`. No `/dev`, no `/proc`, no libc.
struct EmptyRoot {
    dir: tempfile::TempDir,
}

impl EmptyRoot {
    fn new(binary: &Path, child: &Path, ca: Option<&Path>) -> EmptyRoot {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["etc", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::copy(binary, root.join("credwrap")).unwrap();
        std::fs::copy(child, root.join("sdk_child")).unwrap();
        std::fs::write(
            root.join("etc/hosts"),
            "127.0.0.1 localhost\n127.0.0.1 sts.credwrap.test\n127.0.0.1 sts.corp.test\n",
        )
        .unwrap();
        // Nothing to ask: every name this run needs is in /etc/hosts.
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        if let Some(ca) = ca {
            std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
            std::fs::copy(ca, root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
        }
        EmptyRoot { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `/credwrap ARGS -- /sdk_child` chrooted, with exactly `env` (and the source keys).
    fn run(&self, env: &[(&str, String)], args: &[&str]) -> Output {
        // Absolute: the PATH given is the root's.
        let mut cmd = Command::new("/usr/sbin/chroot");
        cmd.arg(self.path())
            .arg("/credwrap")
            .args(args)
            .args(["--", "/sdk_child"]);
        cmd.env_clear()
            .env("AWS_ACCESS_KEY_ID", SOURCE_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SOURCE_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CREDWRAP_ROLE_ARN", ROLE_ARN)
            .env("TMPDIR", "/tmp")
            .env("HOME", "/")
            .env("PATH", "/");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd.stdin(Stdio::null()))
    }
}

fn need_root() -> bool {
    // SAFETY: a plain getter.
    let root = unsafe { libc::geteuid() == 0 };
    root || support::skip::<()>("chroot needs root").is_some()
}

/// Each target's shipped binary that runs here, unpacked (in the returned directory), and the
/// static child, when chroot can be used (root).
fn shipped_binaries_as_root() -> Vec<(String, tempfile::TempDir, PathBuf, PathBuf)> {
    let Some((dist, child)) = shipped() else {
        return Vec::new();
    };
    if !need_root() {
        return Vec::new();
    }
    targets(&dist)
        .into_iter()
        .filter(|t| runs_here(t))
        .map(|target| {
            let tmp = tempfile::tempdir().unwrap();
            let binary = unpack(&dist, &target, tmp.path()).join("credwrap");
            (target, tmp, binary, child.clone())
        })
        .collect()
}

/// The demo as it runs in a scratch image: assume against an STS reached by host name, serve,
/// refresh (credentials that live eight seconds, a child that calls STS for twenty), the child
/// as the role; nothing left in /tmp.
#[test]
fn the_static_binary_runs_the_demo_in_an_empty_root() {
    for (target, _unpacked, binary, child) in shipped_binaries_as_root() {
        println!("{target}");
        demo_in_an_empty_root(&binary, &child);
    }
}

fn demo_in_an_empty_root(binary: &Path, child: &Path) {
    let root = EmptyRoot::new(binary, child, None);
    let sb = Sandbox::new();
    sb.sts.set_lifetime(std::time::Duration::from_secs(8));
    let port = sb.sts.url().rsplit(':').next().unwrap().to_string();
    let out = root.run(
        &[
            (
                "AWS_ENDPOINT_URL_STS",
                format!("http://sts.credwrap.test:{port}"),
            ),
            ("SOAK_LIFETIME", "8".into()),
            ("SOAK_SECONDS", "20".into()),
        ],
        &["-vv"],
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("arn=arn:aws:sts::123456789012:assumed-role/deploy/"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    support::assert_stderr_has(&out, "refreshed role credentials");
    assert!(
        sb.sts.keys_used_for("GetCallerIdentity").len() >= 2,
        "no refresh reached the child"
    );
    // No device file was needed for the secrets, and nothing was left behind.
    assert!(!out.stderr.contains("randomness"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0
    );
}

/// TLS to STS where the image has no CA store: the bundled Mozilla roots are trusted (said at
/// debug level; the test's own CA is not among them, so the handshake fails with a certificate
/// error, not for want of roots); a CA file where the system keeps one, or AWS_CA_BUNDLE,
/// is trusted instead.
#[test]
fn without_a_ca_store_the_bundled_roots_are_trusted_and_a_named_bundle_wins() {
    for (target, _unpacked, binary, child) in shipped_binaries_as_root() {
        println!("{target}");
        trust_in_an_empty_root(&binary, &child);
    }
}

fn trust_in_an_empty_root(binary: &Path, child: &Path) {
    let sb = Sandbox::new();
    let net = CorpNet::start(&sb);
    let sts = (
        "AWS_ENDPOINT_URL_STS",
        format!("https://sts.corp.test:{}", net.tls_port),
    );

    let bare = EmptyRoot::new(binary, child, None);
    let out = bare.run(std::slice::from_ref(&sts), &["-vv"]);
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "Mozilla roots bundled");
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "not a certificate error: {}",
        out.stderr
    );

    // The CA where a system keeps its store: trusted as the system's (the child too).
    let with_store = EmptyRoot::new(binary, child, Some(&net.ca));
    let out = with_store.run(std::slice::from_ref(&sts), &["-vv"]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(&out, "the system's CA certificates");

    // AWS_CA_BUNDLE wins over the (empty) system store and the bundled roots.
    std::fs::copy(&net.ca, bare.path().join("corp-ca.pem")).unwrap();
    let out = bare.run(
        &[
            sts.clone(),
            ("AWS_CA_BUNDLE", "/corp-ca.pem".into()),
            ("SSL_CERT_FILE", "/corp-ca.pem".into()),
        ],
        &["-vv"],
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(&out, "trusting the configured CA bundle");
}

/// A static file server on 127.0.0.1 over `dir`, as a release page is; its base URL.
struct Files {
    /// Serves until dropped.
    _server: support::Running,
    url: String,
}

impl Files {
    fn serve(dir: &Path) -> Files {
        let server = support::start(
            Command::new(support::python())
                .args([
                    "-u",
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "0",
                    "--directory",
                ])
                .arg(dir),
        );
        let line = server.line_until("the server's port", |l| l.starts_with("Serving HTTP"));
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("{line}"));
        Files {
            url: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }
}

/// `sh install.sh` as a user (not root) would pipe it from the release page, on each
/// architecture (`uname -m` as an aarch64 machine answers it, for the other): the tarball of
/// that architecture, into ~/.local/bin, checked against SHA256SUMS; a tampered tarball is
/// refused and leaves nothing behind.
#[test]
fn the_installer_checks_the_download_and_installs() {
    let Some((dist, _)) = shipped() else { return };
    for target in targets(&dist) {
        if runs_here(&target) {
            install_as_a_user(&dist, &target);
        }
    }
}

fn install_as_a_user(dist: &Path, target: &str) {
    // SAFETY: a plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    let user_dir = || {
        let d = tempfile::tempdir().unwrap();
        if root {
            // The installer runs as nobody: its home and TMPDIR are nobody's.
            let _ = run(Command::new("chown").arg("65534:65534").arg(d.path()));
        }
        d
    };
    // This machine as the target's architecture would answer `uname`.
    let machine = user_dir();
    let arch = target.split('-').next().unwrap();
    let uname = machine.path().join("uname");
    std::fs::write(
        &uname,
        format!("#!/bin/sh\ncase \"$1\" in -m) echo {arch} ;; *) echo Linux ;; esac\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(machine.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    // As root, in a PID namespace of its own with `pid1`: its shell's $$ is then 1.
    let run_installer_as = |pid1: bool, url: &str, home: &Path, tmp: &Path| -> Output {
        let mut cmd = if root {
            let setpriv = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
            ];
            let mut c = Command::new(if pid1 { "unshare" } else { "setpriv" });
            if pid1 {
                c.args(["--pid", "--fork"]).args(setpriv);
            } else {
                c.args(&setpriv[1..]);
            }
            c
        } else {
            Command::new("sh")
        };
        cmd.arg(dist.join("install.sh"))
            .env_clear()
            .env("PATH", &path)
            .env("HOME", home)
            .env("TMPDIR", tmp)
            .env("CREDWRAP_RELEASE_URL", url);
        run(cmd.stdin(Stdio::null()))
    };
    let run_installer =
        |url: &str, home: &Path, tmp: &Path| run_installer_as(false, url, home, tmp);

    let good = Files::serve(dist);
    let (home, tmp) = (user_dir(), user_dir());
    let out = run_installer(&good.url, home.path(), tmp.path());
    assert_eq!(out.code(), Some(0), "{target}: {}", out.stderr);
    let installed = home.path().join(".local/bin/credwrap");
    let version = run(Command::new(&installed).arg("--version"));
    for part in [env!("CARGO_PKG_VERSION"), target] {
        assert!(version.stdout.contains(part), "{part}: {}", version.stdout);
    }
    support::assert_stderr_has(&out, "is not on PATH");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "left files in TMPDIR"
    );

    // Where credwrap is a directory: refused, and nothing put inside it.
    let (home, tmp) = (user_dir(), user_dir());
    let taken = home.path().join(".local/bin/credwrap");
    std::fs::create_dir_all(&taken).unwrap();
    if root {
        let _ = run(Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(home.path()));
    }
    let out = run_installer(&good.url, home.path(), tmp.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    support::assert_stderr_has(&out, "is a directory");
    assert_eq!(
        std::fs::read_dir(&taken).unwrap().count(),
        0,
        "installed into it"
    );
    let left: Vec<_> = std::fs::read_dir(home.path().join(".local/bin"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "credwrap")
        .collect();
    assert!(left.is_empty(), "left {left:?}");

    // A link planted where the installer writes its new file (its old name was
    // .credwrap.new.$$, and $$ is 1 here): the link's target is not overwritten.
    if root && target.starts_with(std::env::consts::ARCH) {
        let (home, tmp) = (user_dir(), user_dir());
        let bin = home.path().join(".local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let victim = home.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, bin.join(".credwrap.new.1")).unwrap();
        let _ = run(Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(home.path()));
        let out = run_installer_as(true, &good.url, home.path(), tmp.path());
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(bin.join("credwrap").is_file());
    }
    drop(good);

    // The same release with one byte of this target's tarball changed.
    let tampered = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dist).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), tampered.path().join(entry.file_name())).unwrap();
        }
    }
    let t = tarball(tampered.path(), target);
    let mut bytes = std::fs::read(&t).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&t, bytes).unwrap();
    let bad = Files::serve(tampered.path());
    let (home, tmp) = (user_dir(), user_dir());
    let out = run_installer(&bad.url, home.path(), tmp.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    support::assert_stderr_has(&out, "checksum mismatch");
    assert!(
        !home.path().join(".local/bin/credwrap").exists(),
        "installed a tampered binary"
    );
    let left: Vec<_> = std::fs::read_dir(home.path().join(".local/bin"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left {left:?}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "left files in TMPDIR"
    );
    drop(bad);
}
