//! What both endpoint protocols answer with: JSON and text replies, the current credential or a
//! 503, constant-time secret comparison.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use subtle::ConstantTimeEq;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::broker::{CredentialReader, Lease};
use crate::role::credential::RoleCredential;

pub type Reply = Response<Full<Bytes>>;

/// The broker's current credential as one listener's request sees it: revoked once the command
/// has exited, and needing the listener's protocol's minimum remaining lifetime.
pub struct Current<'a> {
    pub reader: &'a CredentialReader,
    pub revoked: bool,
    pub min_remaining: Duration,
    pub rendered: &'a RenderCache,
}

impl Current<'_> {
    /// The credential held now, whether or not it may still be served.
    pub fn lease(&self) -> Option<Arc<Lease>> {
        (!self.revoked).then(|| self.reader.held())
    }

    /// The current credential, rendered by `render` once per credential for this listener, or
    /// 503 when there is none fit to hand out. Never waits on STS.
    pub fn credential_reply(&self, render: impl FnOnce(&RoleCredential) -> Vec<u8>) -> Reply {
        if self.revoked {
            return error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "ShuttingDown",
                "credwrap is exiting; its credentials are no longer served",
            );
        }
        match self.reader.current(self.min_remaining) {
            Some(lease) => json(StatusCode::OK, self.rendered.get_or_render(&lease, render)),
            None => error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "CredentialsUnavailable",
                "credwrap could not refresh the role's credentials from STS and is retrying; see its log",
            ),
        }
    }
}

/// One listener's rendering of the current credential, made on the first request after each
/// refresh: the hot path then only clones a reference-counted buffer. Per listener, because
/// each protocol renders its own document.
#[derive(Default)]
pub struct RenderCache {
    body: RwLock<Option<(u64, Bytes)>>,
}

impl RenderCache {
    fn get_or_render(
        &self,
        lease: &Lease,
        render: impl FnOnce(&RoleCredential) -> Vec<u8>,
    ) -> Bytes {
        let cached = self.body.read().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, body)) = cached.as_ref() {
            if *generation == lease.generation {
                return body.clone();
            }
        }
        drop(cached);
        let body = crate::sys::secret::wiped_bytes(render(&lease.credential));
        *self.body.write().unwrap_or_else(|e| e.into_inner()) =
            Some((lease.generation, body.clone()));
        body
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

pub fn error_reply(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    json(status, Bytes::from(body))
}

pub fn method_not_allowed(allow: &'static str) -> Reply {
    let mut resp = error_reply(
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

pub fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Reply {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    crate::sys::random::hex(bytes)
        .map_err(|e| anyhow::anyhow!("no randomness from the kernel (getrandom): {e}"))
}
