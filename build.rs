//! What `credwrap --version` says besides the version: the commit it was built from, the target,
//! and whether the C library is linked in (a static binary runs on any Linux).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CREDWRAP_COMMIT");
    // The release script names the commit, so a build from an unpacked source tree (no .git)
    // says the same as one from the checkout.
    let commit = std::env::var("CREDWRAP_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    let target = std::env::var("TARGET").unwrap_or_default();
    let linkage = match std::env::var("CARGO_CFG_TARGET_FEATURE") {
        Ok(features) if features.split(',').any(|f| f == "crt-static") => "static",
        _ => "dynamic",
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=CREDWRAP_VERSION_LINE={version} (commit {commit}, {target}, {linkage})"
    );
}

/// The checked-out commit, and a note to rebuild when it moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty())
}
