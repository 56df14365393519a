//! Stand-ins for the user's shared AWS files, so that no profile in them can beat the endpoint.
//!
//! A `[default]` profile with keys in `~/.aws/credentials` wins over the container provider in
//! every SDK. A client gets an empty credentials file, and a copy of the config file without
//! the keys that yield credentials, so region, retry and S3 settings still apply.

use std::ffi::OsString;

use crate::sys::private_dir::PrivateDir;

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

/// Writes the stand-ins into credwrap's private directory and returns the variables that point
/// the child at them. `config` is the user's config file as credwrap read it at start.
pub fn write_stand_ins(
    dir: &PrivateDir,
    config: &str,
) -> anyhow::Result<Vec<(&'static str, OsString)>> {
    Ok(vec![
        (
            "AWS_CONFIG_FILE",
            dir.write("config", &sanitize_config(config))?.into(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.write("credentials", "")?.into(),
        ),
        ("BOTO_CONFIG", dir.write("boto", "")?.into()),
    ])
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
