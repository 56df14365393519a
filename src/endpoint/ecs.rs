//! The container-credentials protocol, as every SDK's container provider reads it: one random
//! path, `Authorization: <token>` (raw, no scheme), a JSON credential.

use crate::settings::TokenDelivery;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::gateway::UriForm;
use super::http::{self, Current, Reply};
use super::StartError;
use crate::role::credential::{fmt_expiration, RoleCredential};
use crate::sys::private_dir::PrivateDir;
use crate::sys::secret::Secret;

/// botocore fails a call when its container credential has less than this left (its mandatory
/// refresh window), so none with less is served.
pub const MIN_REMAINING: std::time::Duration = std::time::Duration::from_secs(10 * 60);

pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
pub const ENV_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The token's other form, a file the SDK reads (`--token-file`).
pub const ENV_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// The secrets of one container endpoint, and where the child finds the token.
pub struct EcsService {
    /// A random path: what SDKs without token support would otherwise get for free, and the
    /// whole secret where none is sent (a relative URI, as ECS gives it).
    path: String,
    /// Required in `Authorization` when set.
    token: Option<Secret>,
    /// With `--token-file`: the 0600 file holding the token, instead of the environment.
    token_file: Option<PathBuf>,
    /// Whether the token also goes into the environment (`AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    token_variable: bool,
    warned_missing_token: AtomicBool,
}

impl EcsService {
    /// New random secrets; with `token_file`, the token is written to `dir` (0600) instead of
    /// going into the child's environment, which any process of the same user can read.
    pub fn new(dir: &PrivateDir, delivery: TokenDelivery) -> Result<EcsService, StartError> {
        let token = Secret::new(http::random_hex(32).map_err(StartError::random)?);
        let token_file = if delivery != TokenDelivery::Variable {
            Some(
                dir.write_secret("token", &token)
                    .map_err(|e| StartError::files(&e))?,
            )
        } else {
            None
        };
        Ok(EcsService {
            path: format!("/{}", http::random_hex(16).map_err(StartError::random)?),
            token: Some(token),
            token_file,
            token_variable: delivery != TokenDelivery::File,
            warned_missing_token: AtomicBool::new(false),
        })
    }

    /// Secrets for containers, their own: a 256-bit path and, for a full URI, a token. A
    /// relative URI gets no token (not every SDK sends one with it): the path is the secret.
    pub fn for_gateway(with_token: bool) -> Result<EcsService, StartError> {
        let token = if with_token {
            Some(Secret::new(
                http::random_hex(32).map_err(StartError::random)?,
            ))
        } else {
            None
        };
        Ok(EcsService {
            path: format!("/{}", http::random_hex(32).map_err(StartError::random)?),
            token,
            token_file: None,
            token_variable: true,
            warned_missing_token: AtomicBool::new(false),
        })
    }

    /// The token requests must carry, if any.
    pub fn token(&self) -> Option<Secret> {
        self.token.clone()
    }

    /// The lines of `docker run --env-file` that point a container's SDK here.
    pub fn gateway_env_lines(&self, addr: SocketAddr, form: UriForm) -> Vec<String> {
        env_lines(addr, form, &self.path, self.token.as_ref())
    }

    /// The variables that point an SDK at this endpoint on `addr`.
    pub fn client_env(&self, addr: SocketAddr) -> Vec<(&'static str, Secret)> {
        let uri = Secret::new(format!("http://{addr}{}", self.path));
        let mut env = vec![(ENV_FULL_URI, uri)];
        if let Some(file) = &self.token_file {
            env.push((ENV_TOKEN_FILE, Secret::new(file.to_string_lossy())));
        }
        if let (true, Some(token)) = (self.token_variable, &self.token) {
            env.push((ENV_TOKEN, token.clone()));
        }
        // Java falls through to the real IMDS when the container endpoint fails, and the JS and
        // Rust chains would too: the endpoint must be the child's only source.
        env.push(("AWS_EC2_METADATA_DISABLED", Secret::new("true")));
        env
    }

    pub fn respond(&self, current: &Current<'_>, req: &Request<Incoming>) -> Reply {
        // In constant time: for a relative URI the path is the whole secret.
        if !http::bytes_eq(req.uri().path().as_bytes(), self.path.as_bytes()) {
            return http::error_reply(StatusCode::NOT_FOUND, "NotFound", "no such resource");
        }
        if req.method() != Method::GET {
            return http::method_not_allowed("GET");
        }
        if let Some(token) = &self.token {
            let auth = req.headers().get(AUTHORIZATION);
            if !http::secret_eq(auth, token.expose()) {
                if auth.is_none() {
                    self.warn_missing_token();
                }
                return http::error_reply(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    self.unauthorized(),
                );
            }
        }
        current.credential_reply(document)
    }

    fn unauthorized(&self) -> &'static str {
        if self.token_file.is_some() {
            "the Authorization header must be the contents of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, \
             exactly; SDKs older than token-file support send none (see credwrap's docs/sdks.md)"
        } else {
            "the Authorization header must be AWS_CONTAINER_AUTHORIZATION_TOKEN, exactly"
        }
    }

    /// Once per run: a request with no token at all is most often an SDK too old for
    /// `--token-file`, and the child only sees a 401.
    fn warn_missing_token(&self) {
        if self.warned_missing_token.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.token_file.is_some() {
            tracing::warn!(
                "a request for the credentials came without an Authorization header: the \
                 command's SDK may be older than AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE support \
                 (botocore 1.32, AWS CLI v2 2.15, JS v3 3.515, Java v2 2.21.30, Go v2 2023-11); \
                 upgrade it or run without --token-file"
            );
        } else {
            tracing::warn!(
                "a request for the credentials came without an Authorization header (answered \
                 401): the command's SDK is not reading AWS_CONTAINER_AUTHORIZATION_TOKEN"
            );
        }
    }
}

/// The lines of `docker run --env-file` for a door at `path` on `addr`, with its token if any.
pub(super) fn env_lines(
    addr: SocketAddr,
    form: UriForm,
    path: &str,
    token: Option<&Secret>,
) -> Vec<String> {
    let mut lines = match form {
        UriForm::Relative => vec![format!("{ENV_RELATIVE_URI}={path}")],
        // SocketAddr prints an IPv6 address in brackets, as a URL needs.
        UriForm::Full => vec![format!("{ENV_FULL_URI}=http://{addr}{path}")],
    };
    if let Some(token) = token {
        lines.push(format!("{ENV_TOKEN}={}", token.expose()));
    }
    lines
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    code: &'static str,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    /// Unknown for a profile's own credentials (SSO may not say): left out, not sent empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    account_id: &'a str,
}

pub(super) fn document(c: &RoleCredential) -> Vec<u8> {
    let document = Document {
        code: "Success",
        kind: "AWS-HMAC",
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        token: c.session_token.expose(),
        expiration: fmt_expiration(c.expiration),
        account_id: &c.account_id,
    };
    // Sized up front so that no reallocation leaves a copy of the keys in freed memory.
    let mut out = Vec::with_capacity(4096);
    // Serialising plain strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &document);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_body_has_what_every_sdk_reads() {
        let c = RoleCredential {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            expiration: UNIX_EPOCH + Duration::from_millis(1_800_000_000_999),
            received: UNIX_EPOCH,
            account_id: "123456789012".into(),
            assumed_role_arn: String::new(),
        };
        let v: serde_json::Value = serde_json::from_slice(&document(&c)).unwrap();
        assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
        assert_eq!(v["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(v["SecretAccessKey"], "s");
        assert_eq!(v["Token"], "t");
        assert_eq!(v["AccountId"], "123456789012");
        assert_eq!(v["Code"], "Success");
    }
}
