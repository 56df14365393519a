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
/// a client at them. `config` is the user's config file as credwrap read it at start; each of
/// `profiles` (a named role's name and its `credential_process` line) is a profile in it.
pub fn write_stand_ins(
    dir: &PrivateDir,
    config: &str,
    profiles: &[(String, String)],
) -> anyhow::Result<Vec<(&'static str, OsString)>> {
    let config = with_credential_processes(&sanitize_config(config), profiles);
    Ok(vec![
        ("AWS_CONFIG_FILE", dir.write("config", &config)?.into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.write("credentials", "")?.into(),
        ),
        ("BOTO_CONFIG", dir.write("boto", "")?.into()),
    ])
}

/// Each named role's profile name and the `credential_process` that reads it from `uri`: this
/// very binary, as `credwrap --credential-process URI`, quoted as a shell would need.
pub fn credential_processes(named: &[(String, String)]) -> Vec<(String, String)> {
    // /proc/self/exe; where /proc is missing (a bare chroot), the name on PATH.
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "credwrap".to_string());
    let quote = |s: &str| {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .unwrap_or_else(|_| s.to_string())
    };
    named
        .iter()
        .map(|(name, uri)| {
            let line = format!("{} {} {}", quote(&exe), CREDENTIAL_PROCESS_FLAG, quote(uri));
            (name.clone(), line)
        })
        .collect()
}

/// The flag that makes credwrap a `credential_process` client (see `client::process`).
pub const CREDENTIAL_PROCESS_FLAG: &str = "--credential-process";

/// `config` with `credential_process = LINE` in `[profile NAME]` for each of `profiles`: in the
/// profile's own section when the file has one (its region and other settings stay with it; a
/// second section of the same name is an error to botocore), else in a new one at the end.
pub fn with_credential_processes(config: &str, profiles: &[(String, String)]) -> String {
    let mut out = String::with_capacity(config.len() + 256 * profiles.len());
    let mut placed = vec![false; profiles.len()];
    for line in config.lines() {
        out.push_str(line);
        out.push('\n');
        let Some(name) = profile_header(line) else {
            continue;
        };
        for (i, (profile, process)) in profiles.iter().enumerate() {
            if !placed[i] && *profile == name {
                out.push_str(&format!("credential_process = {process}\n"));
                placed[i] = true;
            }
        }
    }
    for (i, (profile, process)) in profiles.iter().enumerate() {
        if !placed[i] {
            // `[default]` is how every SDK's config file names the default profile.
            let header = if profile == "default" {
                "[default]".to_string()
            } else {
                format!("[profile {profile}]")
            };
            out.push_str(&format!("\n{header}\ncredential_process = {process}\n"));
        }
    }
    out
}

/// The profile a config file's `[profile NAME]` line starts.
fn profile_header(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut words = inner.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("profile"), Some(name), None) => Some(name),
        // The default profile's own section, as the config file may also write it.
        (Some("default"), None, None) => Some("default"),
        _ => None,
    }
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
    use super::{sanitize_config, with_credential_processes};

    #[test]
    fn a_named_role_goes_into_its_own_profile_or_a_new_one() {
        let cfg = "[default]\nregion = eu-west-1\n[profile  prod ]\nregion = us-east-2\n\
                   [profile production]\nregion = x\n";
        let profiles = vec![
            (
                "prod".to_string(),
                "/bin/credwrap --credential-process http://a/p".to_string(),
            ),
            (
                "dns".to_string(),
                "/bin/credwrap --credential-process http://a/d".to_string(),
            ),
        ];
        let out = with_credential_processes(cfg, &profiles);
        assert_eq!(
            out,
            "[default]\nregion = eu-west-1\n[profile  prod ]\n\
             credential_process = /bin/credwrap --credential-process http://a/p\n\
             region = us-east-2\n[profile production]\nregion = x\n\
             \n[profile dns]\ncredential_process = /bin/credwrap --credential-process http://a/d\n"
        );
    }

    #[test]
    fn the_default_profile_goes_into_its_own_section_as_the_config_writes_it() {
        let line = "/bin/credwrap --credential-process http://a/x".to_string();
        let profiles = vec![("default".to_string(), line)];
        assert_eq!(
            with_credential_processes("[default]\nregion = eu-west-1\n", &profiles),
            "[default]\ncredential_process = /bin/credwrap --credential-process http://a/x\n\
             region = eu-west-1\n"
        );
        assert_eq!(
            with_credential_processes("", &profiles),
            "\n[default]\ncredential_process = /bin/credwrap --credential-process http://a/x\n"
        );
    }

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
