//! Stand-ins for the user's shared AWS files, so that no profile in them can beat the endpoint.
//!
//! A `[default]` profile with keys in `~/.aws/credentials` wins over the container provider in
//! every SDK. The child gets an empty credentials file, and a copy of the config file without
//! the keys that yield credentials, so region, retry and S3 settings still apply.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::TempDir;

/// Config keys that produce credentials; everything else in the file is kept.
const CREDENTIAL_KEYS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
    "role_arn",
    "source_profile",
    "credential_source",
    "credential_process",
    "web_identity_token_file",
    "role_session_name",
    "external_id",
    "mfa_serial",
    "duration_seconds",
    "sso_session",
    "sso_start_url",
    "sso_region",
    "sso_account_id",
    "sso_role_name",
    "sso_registration_scopes",
    "login_session",
];

/// The private directory holding the stand-ins; removed by [`SharedFiles::remove`].
pub struct SharedFiles {
    dir: TempDir,
}

impl SharedFiles {
    /// Writes the stand-ins into a new private (0700) directory.
    pub fn create(user_config: Option<PathBuf>) -> anyhow::Result<SharedFiles> {
        use std::os::unix::fs::PermissionsExt;
        // Private to us: the files hold the token (--token-file) and the user's settings.
        let dir = tempfile::Builder::new()
            .prefix("credwrap-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("could not create a private temporary directory")?;
        let original = match &user_config {
            Some(path) => match fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    tracing::warn!(
                        "could not read {}: {e}; the command gets no AWS config settings",
                        path.display()
                    );
                    String::new()
                }
            },
            None => String::new(),
        };
        write_private(&dir.path().join("config"), &sanitize_config(&original))?;
        write_private(&dir.path().join("credentials"), "")?;
        write_private(&dir.path().join("boto"), "")?;
        Ok(SharedFiles { dir })
    }

    /// The variables that point the child at the stand-ins.
    pub fn child_env(&self) -> Vec<(&'static str, OsString)> {
        let p = |name: &str| self.dir.path().join(name).into_os_string();
        vec![
            ("AWS_CONFIG_FILE", p("config")),
            ("AWS_SHARED_CREDENTIALS_FILE", p("credentials")),
            ("BOTO_CONFIG", p("boto")),
        ]
    }

    /// Writes a secret into a 0600 file in the private directory; returns its path.
    pub fn write_secret(
        &self,
        name: &str,
        value: &crate::secret::Secret,
    ) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        write_private(&path, value.expose())?;
        Ok(path)
    }

    pub fn remove(self) {
        if let Err(e) = self.dir.close() {
            tracing::debug!("could not remove the temporary directory: {e}");
        }
    }
}

/// Where the user's config file is, as the SDKs look for it.
pub fn user_config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AWS_CONFIG_FILE").filter(|p| !p.is_empty()) {
        return Some(expand_home(PathBuf::from(p)));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws").join("config"))
}

fn expand_home(p: PathBuf) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => p,
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))
}

/// Drops every credential-bearing `key = value` line, with its indented continuation lines.
pub fn sanitize_config(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut dropping = false;
    for line in text.lines() {
        let indented = line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if dropping && indented {
            continue;
        }
        dropping = false;
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().to_ascii_lowercase());
        if !indented && key.as_deref().is_some_and(|k| CREDENTIAL_KEYS.contains(&k)) {
            dropping = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize_config;

    #[test]
    fn keeps_settings_and_drops_credentials() {
        let cfg = "[default]\nregion = eu-west-1\naws_access_key_id = AKIA\n\
                   AWS_SECRET_ACCESS_KEY=x\ns3 =\n  addressing_style = path\n\
                   [profile dev]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n\
                   credential_process = /bin/creds\n  --flag\nretry_mode = adaptive\n";
        let out = sanitize_config(cfg);
        assert_eq!(
            out,
            "[default]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n\
             [profile dev]\nretry_mode = adaptive\n"
        );
    }
}
