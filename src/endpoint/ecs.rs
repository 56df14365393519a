//! The container-credentials protocol, as every SDK's container provider reads it: one random
//! path, `Authorization: <token>` (raw, no scheme), a JSON credential.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::State;
use crate::broker::fmt_time;
use crate::role::Credential;
use crate::secret::Secret;

pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The token's other form, a file the SDK reads (`--token-file`).
pub const ENV_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

pub fn child_env(addr: SocketAddr, path: &str, token: &Secret) -> Vec<(&'static str, Secret)> {
    vec![
        (ENV_FULL_URI, Secret::new(format!("http://{addr}{path}"))),
        (ENV_TOKEN, token.clone()),
        // Java falls through to the real IMDS when the container endpoint fails, and the JS
        // and Rust chains would too: the endpoint must be the child's only source.
        ("AWS_EC2_METADATA_DISABLED", Secret::new("true")),
    ]
}

pub fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != state.path {
        return super::error(StatusCode::NOT_FOUND, "NotFound", "no such resource");
    }
    if req.method() != Method::GET {
        return super::method_not_allowed("GET");
    }
    if !super::secret_eq(req.headers().get(AUTHORIZATION), state.token.expose()) {
        return super::error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the Authorization header must be AWS_CONTAINER_AUTHORIZATION_TOKEN, exactly",
        );
    }
    super::serve_current(state, body)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    code: &'static str,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    account_id: &'a str,
}

pub fn body(c: &Credential) -> Bytes {
    let body = Body {
        code: "Success",
        kind: "AWS-HMAC",
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        token: c.session_token.expose(),
        expiration: fmt_time(floor_to_second(c.expiration)),
        account_id: &c.account_id,
    };
    // Serialising plain strings cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// `YYYY-MM-DDTHH:MM:SSZ` is what the strictest parsers take; rounding down never promises a
/// credential for longer than STS does.
pub fn floor_to_second(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn expiration_is_whole_seconds_utc() {
        let c = Credential {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            expiration: UNIX_EPOCH + Duration::from_millis(1_800_000_000_999),
            received: UNIX_EPOCH,
            account_id: "123456789012".into(),
            assumed_role_arn: String::new(),
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&c)).unwrap();
        assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
        assert_eq!(v["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(v["Token"], "t");
        assert_eq!(v["AccountId"], "123456789012");
    }
}
