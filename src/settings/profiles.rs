//! The AWS config and credentials files, read once, as plain data the settings steps look into.

use std::collections::HashMap;

use aws_runtime::env_config::file::EnvConfigFiles;
use aws_types::os_shim_internal::{Env, Fs};

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
];

/// Every profile of the config and credentials files, merged as the SDKs merge them.
#[derive(Debug, Default, Clone)]
pub struct Profiles {
    profiles: HashMap<String, Profile>,
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
    /// Reads the files the SDKs read (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, or their
    /// defaults under `~/.aws`). Missing files are no profiles; a malformed one is an error.
    pub async fn load(env: &Env) -> Result<Profiles, String> {
        let sections =
            aws_config::profile::load(&Fs::real(), env, &EnvConfigFiles::default(), None)
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
        Ok(Profiles { profiles })
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
        Profiles { profiles }
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }
}
