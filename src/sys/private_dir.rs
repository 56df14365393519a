//! credwrap's private temporary directory (0700): the token file, the child's stand-in AWS
//! files. It lives as long as the run and is removed when the command exits.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::Context;
use tempfile::TempDir;

use crate::sys::secret::Secret;

pub struct PrivateDir {
    dir: TempDir,
}

impl PrivateDir {
    /// In `parent`, or in TMPDIR.
    pub fn create(parent: Option<&std::path::Path>) -> anyhow::Result<PrivateDir> {
        let mut builder = tempfile::Builder::new();
        builder
            .prefix("credwrap-")
            .permissions(fs::Permissions::from_mode(0o700));
        let dir = match parent {
            Some(p) => builder.tempdir_in(p),
            None => builder.tempdir(),
        }
        .context("could not create a private temporary directory")?;
        let leftovers = remove_leftovers(dir.path());
        if leftovers > 0 {
            tracing::info!(
                "removed {leftovers} private directories of credwraps that were killed \
                 (SIGKILL leaves them behind)"
            );
        }
        let private = PrivateDir { dir };
        private.write(OWNER, &this_process())?;
        Ok(private)
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `text` as a new 0600 file in the directory, exactly as given (no newline added:
    /// botocore and Go reject a token file that ends in one); returns its path.
    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("could not write {}", path.display()))?;
        Ok(path)
    }

    pub fn write_secret(&self, name: &str, value: &Secret) -> anyhow::Result<PathBuf> {
        self.write(name, value.expose())
    }

    /// Creates the 0700 directory `name` in it; returns its path.
    pub fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.dir.path().join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        Ok(path)
    }

    /// Removes the directory and everything in it (dropping it does the same, silently).
    pub fn remove(self) {
        if let Err(e) = self.dir.close() {
            tracing::debug!("could not remove the temporary directory: {e}");
        }
    }
}

/// The file in each private directory that says whose it is: "PID START", START being the
/// process's start time in clock ticks since boot (`/proc/PID/stat`), so that a PID used again
/// is not taken for its owner.
const OWNER: &str = "owner";

fn this_process() -> String {
    let pid = std::process::id();
    format!("{pid} {}", start_time(pid).unwrap_or_default())
}

/// Field 22 of `/proc/PID/stat`, read after the command name (which may hold spaces).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Removes, beside `ours`, the private directories of credwraps that are gone: a directory of
/// this user's (not a link) named `credwrap-*` whose owner file names a process that no longer
/// runs. One without an owner file (being created, or an older credwrap's) is left alone, as is
/// everything where /proc cannot tell. Returns how many were removed.
fn remove_leftovers(ours: &std::path::Path) -> usize {
    let Some(parent) = ours.parent() else {
        return 0;
    };
    let mut removed = 0;
    for (path, _, alive) in owned_dirs(parent) {
        if path != ours && !alive && fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The private directory of the running credwrap `pid`, in TMPDIR or RUNNER_TEMP (where
/// `--serve` makes it in a GitHub job): what `credwrap status --pid` reads.
pub fn of_process(pid: u32) -> Option<PathBuf> {
    let parents = [
        Some(std::env::temp_dir()),
        std::env::var_os("RUNNER_TEMP").map(PathBuf::from),
    ];
    parents.into_iter().flatten().find_map(|parent| {
        owned_dirs(&parent)
            .into_iter()
            .find(|(_, owner, alive)| *owner == pid && *alive)
            .map(|(path, _, _)| path)
    })
}

/// This user's directories (not links) named `credwrap-*` in `parent` that have an owner file:
/// each with its owner's PID and whether that process still runs. Empty where /proc cannot
/// tell.
fn owned_dirs(parent: &std::path::Path) -> Vec<(PathBuf, u32, bool)> {
    use std::os::unix::fs::MetadataExt;
    let (true, Ok(entries)) = (
        fs::metadata("/proc/self/stat").is_ok(),
        fs::read_dir(parent),
    ) else {
        return Vec::new();
    };
    // SAFETY: a plain getter.
    let uid = unsafe { libc::geteuid() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry.file_name().to_string_lossy().starts_with("credwrap-");
        let mine = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !named || !mine {
            continue;
        }
        let Ok(owner) = fs::read_to_string(path.join(OWNER)) else {
            continue;
        };
        let mut words = owner.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(pid)), Some(Ok(start))) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(pid) = u32::try_from(pid) else {
            continue;
        };
        let alive = start_time(pid).is_some_and(|now| now == start);
        found.push((path, pid, alive));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directories_of_credwraps_that_are_gone_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = parent.path().join(name);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("token"), "t").unwrap();
            if let Some(owner) = owner {
                fs::write(dir.join(OWNER), owner).unwrap();
            }
            dir
        };
        let dead = make("credwrap-dead", Some("999999999 5".into()));
        // Our PID with another start time: the PID was used again.
        let reused = make("credwrap-reused", Some(format!("{} 1", std::process::id())));
        let alive = make("credwrap-alive", Some(this_process()));
        let unknown = make("credwrap-new", None);
        let other = make("other-dead", Some("999999999 5".into()));
        let ours = PrivateDir::create(Some(parent.path())).unwrap();
        assert!(!dead.exists() && !reused.exists());
        assert!(alive.exists() && unknown.exists() && other.exists());
        assert!(ours.path().join(OWNER).exists());
    }
}
