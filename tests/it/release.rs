//! What is shipped, tested as shipped: the release tarball `scripts/release` builds, its static
//! binary run from an empty root, its TLS trust with and without a CA store, and the installer.
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

/// The one tarball in `dist`.
fn tarball(dist: &Path) -> PathBuf {
    std::fs::read_dir(dist)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "gz"))
        .expect("a tarball")
}

/// The tarball unpacked into `into`; the directory it holds.
fn unpack(dist: &Path, into: &Path) -> PathBuf {
    let t = tarball(dist);
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
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpack(&dist, tmp.path());
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
        assert!(dir.join(file).is_file(), "{file} missing from the tarball");
    }
    let binary = dir.join("credwrap");
    assert!(!readelf("-l", &binary).contains("program interpreter"));
    assert!(!readelf("-d", &binary).contains("(NEEDED)"));
    let version = run(Command::new(&binary).arg("--version"));
    let commit = run(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]));
    for part in [
        env!("CARGO_PKG_VERSION"),
        commit.stdout.trim(),
        "x86_64-unknown-linux-gnu",
        "static",
    ] {
        assert!(
            version.stdout.contains(part),
            "{part} not in {}",
            version.stdout
        );
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

/// The shipped binary unpacked (in the returned directory) and the static child, when chroot
/// can be used (root).
fn shipped_binary_as_root() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let (dist, child) = shipped()?;
    if !need_root() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let binary = unpack(&dist, tmp.path()).join("credwrap");
    Some((tmp, binary, child))
}

/// The demo as it runs in a scratch image: assume against an STS reached by host name, serve,
/// refresh (credentials that live eight seconds, a child that calls STS for twenty), the child
/// as the role; nothing left in /tmp.
#[test]
fn the_static_binary_runs_the_demo_in_an_empty_root() {
    let Some((_unpacked, binary, child)) = shipped_binary_as_root() else {
        return;
    };
    let root = EmptyRoot::new(&binary, &child, None);
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
    let Some((_unpacked, binary, child)) = shipped_binary_as_root() else {
        return;
    };
    let sb = Sandbox::new();
    let net = CorpNet::start(&sb);
    let sts = (
        "AWS_ENDPOINT_URL_STS",
        format!("https://sts.corp.test:{}", net.tls_port),
    );

    let bare = EmptyRoot::new(&binary, &child, None);
    let out = bare.run(std::slice::from_ref(&sts), &["-vv"]);
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "Mozilla roots bundled");
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "not a certificate error: {}",
        out.stderr
    );

    // The CA where a system keeps its store: trusted as the system's (the child too).
    let with_store = EmptyRoot::new(&binary, &child, Some(&net.ca));
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

/// `sh install.sh` as a user (not root) would pipe it from the release page: into
/// ~/.local/bin, checked against SHA256SUMS; a tampered tarball is refused and leaves nothing
/// behind.
#[test]
fn the_installer_checks_the_download_and_installs() {
    let Some((dist, _)) = shipped() else { return };
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
    let run_installer = |url: &str, home: &Path, tmp: &Path| -> Output {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"]);
            c
        } else {
            Command::new("sh")
        };
        cmd.arg(dist.join("install.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("TMPDIR", tmp)
            .env("CREDWRAP_RELEASE_URL", url);
        run(cmd.stdin(Stdio::null()))
    };

    let good = Files::serve(&dist);
    let (home, tmp) = (user_dir(), user_dir());
    let out = run_installer(&good.url, home.path(), tmp.path());
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let installed = home.path().join(".local/bin/credwrap");
    let version = run(Command::new(&installed).arg("--version"));
    assert!(
        version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        version.stdout
    );
    support::assert_stderr_has(&out, "is not on PATH");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "left files in TMPDIR"
    );
    drop(good);

    // The same release with one byte of the tarball changed.
    let tampered = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dist).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), tampered.path().join(entry.file_name())).unwrap();
        }
    }
    let t = tarball(tampered.path());
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
