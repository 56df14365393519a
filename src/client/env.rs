//! A client's environment (the child's, or what `--serve` hands the later processes): the
//! endpoint's variables in, every other way to credentials out.
//!
//! Every SDK tries several providers before the container one (botocore: env keys, assume-role
//! profile, web identity, SSO, shared credentials file, credential_process, config file, then
//! container). Anything left here would silently win over credwrap's role.

use std::ffi::{OsStr, OsString};

use crate::sys::secret::Secret;

/// Variables that select credentials some other way; none may reach the child.
pub const REMOVED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_V1_DISABLED",
    "AWS_CREDENTIAL_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "BOTO_CONFIG",
    // An outer credwrap's named roles' secret; this one sets its own where it has any.
    crate::endpoint::named::ENV_ROLES_TOKEN,
    // A one-time code is of no use to the child, and it is nobody else's business.
    "CREDWRAP_MFA_CODE",
];

/// Set in the child so that a credwrap started inside it knows it is nested.
pub const NESTED_MARKER: &str = "CREDWRAP_ACTIVE_ROLE";

/// A credwrap inside another one takes the outer role as its source: say so, since a user who
/// did not mean to stack them would otherwise be puzzled by AccessDenied.
pub fn warn_if_nested() {
    if let Some(outer) = std::env::var_os(NESTED_MARKER) {
        tracing::warn!(
            "running inside another credwrap (role {}); its role is the source credential for this one",
            outer.to_string_lossy()
        );
    }
}

/// What the child's environment is built from, besides the parent's.
pub struct Additions<'a> {
    /// The endpoint's variables.
    pub endpoint: &'a [(&'static str, Secret)],
    /// Files credwrap owns that stand in for the user's shared files.
    pub files: &'a [(&'static str, OsString)],
    pub region: Option<&'a str>,
    pub role_arn: &'a str,
}

/// Builds a client's environment from credwrap's own.
pub fn build(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    add: &Additions<'_>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| !REMOVED.iter().any(|r| OsStr::new(r) == k.as_os_str()))
        .collect();
    fn put(env: &mut Vec<(OsString, OsString)>, key: &str, value: OsString) {
        env.retain(|(k, _)| k.as_os_str() != OsStr::new(key));
        env.push((key.into(), value));
    }
    for (k, v) in add.endpoint {
        put(&mut env, k, v.expose().into());
    }
    for (k, v) in add.files {
        put(&mut env, k, v.clone());
    }
    if let Some(region) = add.region {
        // botocore reads only AWS_DEFAULT_REGION; the other SDKs read AWS_REGION.
        put(&mut env, "AWS_REGION", region.into());
        put(&mut env, "AWS_DEFAULT_REGION", region.into());
    }
    put(&mut env, NESTED_MARKER, add.role_arn.into());
    let no_proxy = with_loopback(env.iter().find(|(k, _)| k == "NO_PROXY").map(|(_, v)| v));
    let no_proxy_lower = with_loopback(env.iter().find(|(k, _)| k == "no_proxy").map(|(_, v)| v));
    // A CI proxy would otherwise receive (and fail) the request for the credential.
    put(&mut env, "NO_PROXY", no_proxy);
    put(&mut env, "no_proxy", no_proxy_lower);
    env
}

fn with_loopback(current: Option<&OsString>) -> OsString {
    match current {
        None => "127.0.0.1".into(),
        Some(v) if v.is_empty() => "127.0.0.1".into(),
        Some(v)
            if v.to_string_lossy()
                .split(',')
                .any(|h| h.trim() == "127.0.0.1") =>
        {
            v.clone()
        }
        Some(v) => {
            let mut out = v.clone();
            out.push(",127.0.0.1");
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of<'a>(env: &'a [(OsString, OsString)], k: &str) -> Option<&'a OsString> {
        env.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }

    #[test]
    fn removes_other_credentials_and_sets_the_endpoint() {
        let parent = [
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_PROFILE", "dev"),
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1"),
            ("PATH", "/bin"),
            ("NO_PROXY", "corp.example"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let endpoint = [
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                Secret::new("http://127.0.0.1:9/p"),
            ),
            ("AWS_EC2_METADATA_DISABLED", Secret::new("true")),
        ];
        let files = [("AWS_CONFIG_FILE", OsString::from("/tmp/x/config"))];
        let env = build(
            parent,
            &Additions {
                endpoint: &endpoint,
                files: &files,
                region: Some("eu-west-1"),
                role_arn: "arn:aws:iam::123456789012:role/r",
            },
        );
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            assert!(value_of(&env, k).is_none(), "{k} leaked");
        }
        assert_eq!(
            value_of(&env, "AWS_ENDPOINT_URL_STS").unwrap(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            value_of(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI").unwrap(),
            "http://127.0.0.1:9/p"
        );
        assert_eq!(value_of(&env, "AWS_DEFAULT_REGION").unwrap(), "eu-west-1");
        assert_eq!(
            value_of(&env, "NO_PROXY").unwrap(),
            "corp.example,127.0.0.1"
        );
        assert_eq!(value_of(&env, "no_proxy").unwrap(), "127.0.0.1");
        assert_eq!(value_of(&env, "AWS_EC2_METADATA_DISABLED").unwrap(), "true");
        assert_eq!(
            env.iter().filter(|(k, _)| k == "AWS_CONFIG_FILE").count(),
            1
        );
    }
}
