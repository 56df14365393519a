//! An IMDSv2-compatible endpoint, for tools that only read instance metadata.
//!
//! Clients first `PUT /latest/api/token` with a TTL and then send that session token with every
//! `GET`; requests without one (IMDSv1) are refused. IMDS has no shared secret: any local process
//! that can reach the port can read the role's credentials, which is why this mode is opt-in and
//! warns when it starts.
//!
//! Besides the credentials, it answers what SDKs read next to them on an instance: the IAM info
//! (an instance profile named after the role), the region, and an identity document with the
//! account and region. Nothing else about an instance is made up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::http::{self, text, Current, Reply};
use crate::role::credential::{fmt_expiration, RoleCredential};
use crate::settings::limits::RoleArn;
use crate::sys::secret::Secret;

/// botocore and the Rust SDK stretch an IMDS credential with less than ~20 minutes left rather
/// than fail, so none with less than this is served.
pub const MIN_REMAINING: Duration = Duration::from_secs(25 * 60);

const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PREFIX: &str = "/latest/meta-data/iam/security-credentials/";
const IAM_INFO: &str = "/latest/meta-data/iam/info";
const REGION: &str = "/latest/meta-data/placement/region";
const IDENTITY_DOCUMENT: &str = "/latest/dynamic/instance-identity/document";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// What real IMDS allows: one second to six hours.
const MAX_TTL_SECS: u64 = 21_600;
/// A bound on the sessions kept, so a local client looping on PUT cannot grow memory.
const MAX_SESSIONS: usize = 4096;

/// The state of one IMDS endpoint: the role it lists, its region, the sessions it handed out.
pub struct ImdsService {
    role: RoleArn,
    region: Option<String>,
    sessions: Sessions,
}

impl ImdsService {
    pub fn new(role: RoleArn, region: Option<String>) -> ImdsService {
        ImdsService {
            role,
            region,
            sessions: Sessions::default(),
        }
    }

    /// The variables that point an SDK at this endpoint on `addr`. The trailing slash matters:
    /// botocore up to 1.23 appends `latest/api/token` to the endpoint as it is.
    pub fn client_env(&self, addr: SocketAddr) -> Vec<(&'static str, Secret)> {
        vec![
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                Secret::new(format!("http://{addr}/")),
            ),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
                Secret::new("IPv4"),
            ),
            ("AWS_EC2_METADATA_V1_DISABLED", Secret::new("true")),
        ]
    }

    pub fn respond(&self, current: &Current<'_>, req: &Request<Incoming>) -> Reply {
        // The JS SDK v2 joins the endpoint's trailing slash and its own leading one.
        let path = format!("/{}", req.uri().path().trim_start_matches('/'));
        if path == TOKEN_PATH {
            return self.session(req);
        }
        let known = path == CREDENTIALS_PREFIX.trim_end_matches('/')
            || path.starts_with(CREDENTIALS_PREFIX)
            || [IAM_INFO, REGION, IDENTITY_DOCUMENT].contains(&path.as_str());
        if !known {
            return text(StatusCode::NOT_FOUND, "Not Found");
        }
        if req.method() != Method::GET {
            return http::method_not_allowed("GET");
        }
        if !self.sessions.valid(req.headers().get(TOKEN_HEADER)) {
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        match path.as_str() {
            IAM_INFO => self.iam_info(current),
            IDENTITY_DOCUMENT => self.identity_document(),
            REGION => match &self.region {
                Some(region) => text(StatusCode::OK, region),
                None => text(StatusCode::NOT_FOUND, "Not Found"),
            },
            _ => self.credentials(current, &path),
        }
    }

    /// The listing (the role's name, without a trailing newline) or the role's credential.
    fn credentials(&self, current: &Current<'_>, path: &str) -> Reply {
        let name = path
            .strip_prefix(CREDENTIALS_PREFIX)
            .unwrap_or_default()
            .trim_end_matches('/');
        if name.is_empty() {
            return text(StatusCode::OK, self.role.name());
        }
        if name != self.role.name() {
            return text(StatusCode::NOT_FOUND, "Not Found");
        }
        current.credential_reply(document)
    }

    /// What an instance says of its profile; credwrap's is named after the role.
    fn iam_info(&self, current: &Current<'_>) -> Reply {
        let updated = current
            .lease()
            .map_or_else(std::time::SystemTime::now, |l| l.credential.received);
        let info = serde_json::json!({
            "Code": "Success",
            "LastUpdated": fmt_expiration(updated),
            "InstanceProfileArn": format!(
                "arn:{}:iam::{}:instance-profile/{}",
                self.role.partition(),
                self.role.account(),
                self.role.path_and_name()
            ),
        });
        http::json(StatusCode::OK, Bytes::from(info.to_string()))
    }

    /// The identity document's account and region: what SDKs and tools read it for.
    fn identity_document(&self) -> Reply {
        let doc = serde_json::json!({
            "accountId": self.role.account(),
            "region": self.region,
            "version": "2017-09-30",
        });
        http::json(StatusCode::OK, Bytes::from(doc.to_string()))
    }

    fn session(&self, req: &Request<Incoming>) -> Reply {
        if req.method() != Method::PUT {
            return http::method_not_allowed("PUT");
        }
        // Real IMDS refuses proxied token requests; a proxy in front of loopback is a red flag too.
        if req.headers().contains_key("x-forwarded-for") {
            return text(StatusCode::FORBIDDEN, "Forbidden");
        }
        let ttl = req
            .headers()
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|t| (1..=MAX_TTL_SECS).contains(t));
        let Some(ttl) = ttl else {
            return text(
                StatusCode::BAD_REQUEST,
                "Bad Request: missing or invalid TTL",
            );
        };
        let Some(token) = self.sessions.issue(Duration::from_secs(ttl)) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
        };
        let mut resp = text(StatusCode::OK, &token);
        // The Rust and Go SDKs read the granted TTL back from this header.
        resp.headers_mut()
            .insert(TTL_HEADER, HeaderValue::from(ttl));
        resp
    }
}

/// The IMDSv2 session tokens handed out, with their expiry.
#[derive(Default)]
struct Sessions {
    tokens: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    fn issue(&self, ttl: Duration) -> Option<String> {
        let token = http::random_hex(32).ok()?;
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_SESSIONS {
            tokens.retain(|_, expires| *expires > now);
        }
        if tokens.len() >= MAX_SESSIONS {
            // Still full of live sessions: drop the one closest to expiry.
            let oldest = tokens
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                tokens.remove(&t);
            }
        }
        tokens.insert(token.clone(), now + ttl);
        Some(token)
    }

    fn valid(&self, got: Option<&HeaderValue>) -> bool {
        let Some(got) = got else { return false };
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Each stored token is compared in constant time; which one matched leaks nothing.
        tokens
            .iter()
            .any(|(t, expires)| http::secret_eq(Some(got), t) && *expires > now)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    code: &'static str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
}

fn document(c: &RoleCredential) -> Vec<u8> {
    let document = Document {
        code: "Success",
        last_updated: fmt_expiration(c.received),
        kind: "AWS-HMAC",
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        token: c.session_token.expose(),
        expiration: fmt_expiration(c.expiration),
    };
    // Sized up front so that no reallocation leaves a copy of the keys in freed memory.
    let mut out = Vec::with_capacity(4096);
    // Serialising plain strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &document);
    out
}
