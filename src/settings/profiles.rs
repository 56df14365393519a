//! The AWS config and credentials files, each read once, and the profiles in them as plain data
//! the settings steps look into.
//!
//! Read once because a file may be a pipe (`AWS_CONFIG_FILE=<(sops -d config)`) or a FIFO,
//! which yields its contents to the first reader only. Everything else derives from the copy
//! kept here: credwrap's profile lookups, aws-config's loader (which takes profile contents from
//! memory), and the stand-in config file the child gets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_types::os_shim_internal::{Env, Fs};

use crate::sys::secret::Secret;

/// The keys credwrap reads from a profile. Everything else in the files is the SDKs' business.
const KEYS: &[&str] = &[
    "role_arn",
    "source_profile",
    "credential_source",
    "web_identity_token_file",
    "role_session_name",
    "external_id",
    "duration_seconds",
    "mfa_serial",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "region",
    "ca_bundle",
    "ec2_metadata_service_endpoint",
    "ec2_metadata_service_endpoint_mode",
    // Whether a profile's own credentials renew (a named role served as it is).
    "sso_session",
    "sso_start_url",
    "credential_process",
];

/// The contents of the config and credentials files, as read at start.
#[derive(Clone, Debug, Default)]
pub struct AwsFiles {
    /// Secret: a config file may hold keys too.
    pub config: Secret,
    pub credentials: Secret,
}

impl AwsFiles {
    /// Reads the files the SDKs read (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, or their
    /// defaults under `~/.aws`), once each. A missing or unreadable file counts as empty, as in
    /// the SDKs and the AWS CLI; a named file that cannot be read is said at `warn`.
    pub fn read(env: &Env) -> AwsFiles {
        AwsFiles {
            config: read_one(env, "AWS_CONFIG_FILE", ".aws/config"),
            credentials: read_one(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
        }
    }

    /// The same contents for aws-config, which then opens neither file again.
    pub fn for_sdk(&self) -> EnvConfigFiles {
        EnvConfigFiles::builder()
            .with_contents(EnvConfigFileKind::Config, self.config.expose())
            .with_contents(EnvConfigFileKind::Credentials, self.credentials.expose())
            .build()
    }
}

/// Where the SDKs look for one of the files: the variable (with `~` expanded), else the default
/// under HOME.
fn path_of(env: &Env, var: &str, default: &str) -> Option<(PathBuf, bool)> {
    let home = env.get("HOME").ok().filter(|h| !h.is_empty());
    match env.get(var).ok().filter(|p| !p.is_empty()) {
        Some(p) => {
            let path = match (Path::new(&p).strip_prefix("~"), &home) {
                (Ok(rest), Some(home)) => Path::new(home).join(rest),
                _ => PathBuf::from(p),
            };
            Some((path, true))
        }
        None => home.map(|h| (Path::new(&h).join(default), false)),
    }
}

fn read_one(env: &Env, var: &str, default: &str) -> Secret {
    let Some((path, named)) = path_of(env, var, default) else {
        return Secret::default();
    };
    match std::fs::read(&path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Secret::new(text),
            Err(_) => {
                tracing::warn!(
                    "{} is not UTF-8 text: read as empty, as the SDKs do",
                    path.display()
                );
                Secret::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => Secret::default(),
        Err(e) => {
            tracing::warn!(
                "cannot read {} ({var}): {e}; read as empty, as the SDKs do",
                path.display()
            );
            Secret::default()
        }
    }
}

/// Every profile of the config and credentials files, merged as the SDKs merge them.
#[derive(Debug, Default, Clone)]
pub struct Profiles {
    profiles: HashMap<String, Profile>,
    files: AwsFiles,
}

/// One profile's settings that matter to credwrap.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    name: String,
    values: HashMap<&'static str, String>,
}

impl Profile {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl Profiles {
    /// Parses the files as the SDKs do; a malformed one is an error.
    pub async fn parse(files: AwsFiles, env: &Env) -> Result<Profiles, String> {
        let sections = aws_config::profile::load(&Fs::real(), env, &files.for_sdk(), None)
            .await
            .map_err(|e| format!("could not read the AWS config files: {e}"))?;
        let profiles = sections
            .profiles()
            .filter_map(|name| sections.get_profile(name))
            .map(|p| {
                let values = KEYS
                    .iter()
                    .filter_map(|k| p.get(k).map(|v| (*k, v.to_string())))
                    .collect();
                let name = p.name().to_string();
                (name.clone(), Profile { name, values })
            })
            .collect();
        Ok(Profiles { profiles, files })
    }

    /// Profiles from `(name, [(key, value)])` pairs, as a test writes them.
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &[(&str, &str)])]) -> Profiles {
        let profiles = pairs
            .iter()
            .map(|(name, kvs)| {
                let values = kvs
                    .iter()
                    .map(|(k, v)| {
                        let key = KEYS.iter().find(|known| *known == k).expect("a known key");
                        (*key, v.to_string())
                    })
                    .collect();
                let name = name.to_string();
                (name.clone(), Profile { name, values })
            })
            .collect();
        Profiles {
            profiles,
            files: AwsFiles::default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// The files as read, for aws-config and the child's stand-ins.
    pub fn files(&self) -> &AwsFiles {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_sdks() {
        let env = Env::from_slice(&[("HOME", "/h"), ("AWS_CONFIG_FILE", "~/x/config")]);
        assert_eq!(
            path_of(&env, "AWS_CONFIG_FILE", ".aws/config"),
            Some((PathBuf::from("/h/x/config"), true))
        );
        assert_eq!(
            path_of(&env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            Some((PathBuf::from("/h/.aws/credentials"), false))
        );
        assert_eq!(
            path_of(&Env::from_slice(&[]), "AWS_CONFIG_FILE", ".aws/config"),
            None
        );
    }
}
