//! The loopback HTTP endpoint the child's SDK reads its credentials from.
//!
//! It listens on 127.0.0.1 only, on an ephemeral port, under one random path, and answers only a
//! request that carries the random token. It only reads the broker's current credential and never
//! waits on STS, so a request is answered from memory.

mod ecs;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::broker::Credentials;
use crate::secret::Secret;

/// SDKs open one or two connections each; this leaves room for a big process tree while keeping
/// a misbehaving local client from exhausting file descriptors.
const MAX_CONNECTIONS: usize = 512;
/// A request's headers must arrive within this; SDKs send theirs in one write.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Smallest buffer hyper accepts; SDK requests are a few hundred bytes.
const MAX_HEADER_BYTES: usize = 8192;

/// The environment the child needs to find the endpoint.
pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";

struct State {
    credentials: Credentials,
    path: String,
    token: Secret,
    revoked: AtomicBool,
}

/// A running endpoint; [`Endpoint::close`] revokes its token and stops it.
pub struct Endpoint {
    state: Arc<State>,
    addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl Endpoint {
    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn start(credentials: Credentials) -> anyhow::Result<Endpoint> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("could not listen on 127.0.0.1")?;
        let addr = listener.local_addr().context("no local address")?;
        let state = Arc::new(State {
            credentials,
            path: format!("/{}", random_hex(16)?),
            token: Secret::new(random_hex(32)?),
            revoked: AtomicBool::new(false),
        });
        let accept_loop = tokio::spawn(accept(listener, Arc::clone(&state)));
        tracing::debug!(%addr, "credential endpoint listening");
        Ok(Endpoint {
            state,
            addr,
            accept_loop,
        })
    }

    /// The variables that point an SDK at this endpoint. The URI uses the literal 127.0.0.1,
    /// the one host every SDK version accepts over plain HTTP (`localhost` may resolve to ::1).
    pub fn child_env(&self) -> Vec<(&'static str, Secret)> {
        vec![
            (
                ENV_FULL_URI,
                Secret::new(format!("http://{}{}", self.addr, self.state.path)),
            ),
            (ENV_TOKEN, self.state.token.clone()),
        ]
    }

    /// Revokes the token for requests still in flight on open connections, and stops accepting.
    pub fn close(self) {
        self.state.revoked.store(true, Ordering::SeqCst);
        self.accept_loop.abort();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!("endpoint accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("endpoint connection ended: {e}");
            }
            drop(permit);
        });
    }
}

fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != state.path {
        return error(StatusCode::NOT_FOUND, "NotFound", "no such resource");
    }
    if req.method() != Method::GET {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is served here",
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    if !authorized(state, req) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the Authorization header must be AWS_CONTAINER_AUTHORIZATION_TOKEN, exactly",
        );
    }
    if state.revoked.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ShuttingDown",
            "credwrap is exiting; its credentials are no longer served",
        );
    }
    match state.credentials.current() {
        Some(lease) => json(StatusCode::OK, ecs::body(&lease.credential)),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "CredentialsUnavailable",
            "credwrap could not refresh the role's credentials from STS and is retrying; see its log",
        ),
    }
}

fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let expected = state.token.expose().as_bytes();
    req.headers()
        .get(AUTHORIZATION)
        .is_some_and(|got| bool::from(got.as_bytes().ct_eq(expected)))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    json(status, Bytes::from(body))
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `bytes` random bytes from the OS, hex-encoded.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
