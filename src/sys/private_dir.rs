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
        Ok(PrivateDir { dir })
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
