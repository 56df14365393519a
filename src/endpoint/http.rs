//! What both endpoint protocols answer with: JSON and text replies, the current credential or a
//! 503, constant-time secret comparison.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::broker::CredentialReader;
use crate::credential::RoleCredential;

pub type Reply = Response<Full<Bytes>>;

/// The broker's current credential as a request sees it: revoked once the command has exited.
pub struct Current<'a> {
    pub reader: &'a CredentialReader,
    pub revoked: bool,
}

impl Current<'_> {
    /// The credential held now, whether or not it may still be served.
    pub fn lease(&self) -> Option<std::sync::Arc<crate::broker::Lease>> {
        (!self.revoked).then(|| self.reader.held())
    }

    /// The current credential, rendered once per credential by `render`, or 503 when there is
    /// none fit to hand out. Never waits on STS.
    pub fn serve(&self, render: impl FnOnce(&RoleCredential) -> Vec<u8>) -> Reply {
        if self.revoked {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ShuttingDown",
                "credwrap is exiting; its credentials are no longer served",
            );
        }
        match self.reader.current() {
            Some(lease) => json(
                StatusCode::OK,
                lease
                    .rendered
                    .get_or_init(|| crate::secret::wiped_bytes(render(&lease.credential)))
                    .clone(),
            ),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CredentialsUnavailable",
                "credwrap could not refresh the role's credentials from STS and is retrying; see its log",
            ),
        }
    }
}

/// Constant-time: the time taken does not tell how much of a guess was right.
pub fn secret_eq(got: Option<&HeaderValue>, expected: &str) -> bool {
    got.is_some_and(|v| bytes_eq(v.as_bytes(), expected.as_bytes()))
}

/// Constant-time for equal lengths (a length is no secret).
pub fn bytes_eq(got: &[u8], expected: &[u8]) -> bool {
    bool::from(got.ct_eq(expected))
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    json(status, Bytes::from(body))
}

pub fn method_not_allowed(allow: &'static str) -> Reply {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "method not allowed here",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

pub fn json(status: StatusCode, body: Bytes) -> Reply {
    with_type(status, body, "application/json")
}

pub fn text(status: StatusCode, body: &str) -> Reply {
    with_type(
        status,
        Bytes::copy_from_slice(body.as_bytes()),
        "text/plain",
    )
}

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Reply {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `bytes` random bytes from the OS, hex-encoded.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
