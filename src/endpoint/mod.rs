//! The loopback HTTP endpoint the child's SDK reads its credentials from.
//!
//! It listens on 127.0.0.1 only, on an ephemeral port, and speaks one of two protocols: the
//! container-credentials one ([`ecs`], a random path and a random token) or an IMDSv2-compatible
//! one ([`imds`], session tokens from `PUT /latest/api/token`). It only reads the broker's current
//! credential and never waits on STS, so a request is answered from memory.

mod ecs;
mod imds;

pub use ecs::{ENV_TOKEN, ENV_TOKEN_FILE};

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
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

/// Which protocol the endpoint speaks.
pub enum Protocol {
    /// Container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    Container,
    /// IMDSv2, listing this role name under `security-credentials/`.
    Imds { role_name: String },
}

struct State {
    credentials: Credentials,
    protocol: Protocol,
    /// The port we listen on, for the Host check.
    port: u16,
    /// Container protocol: the random path and token.
    path: String,
    token: Secret,
    /// IMDS protocol: the session tokens handed out.
    imds_sessions: imds::Sessions,
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
    pub async fn start(credentials: Credentials, protocol: Protocol) -> anyhow::Result<Endpoint> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("could not listen on 127.0.0.1")?;
        let addr = listener.local_addr().context("no local address")?;
        let state = Arc::new(State {
            credentials,
            protocol,
            port: addr.port(),
            path: format!("/{}", random_hex(16)?),
            token: Secret::new(random_hex(32)?),
            imds_sessions: imds::Sessions::default(),
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

    /// The variables that point an SDK at this endpoint. URIs use the literal 127.0.0.1, the
    /// one host every SDK version accepts over plain HTTP (`localhost` may resolve to ::1).
    pub fn child_env(&self) -> Vec<(&'static str, Secret)> {
        match self.state.protocol {
            Protocol::Container => ecs::child_env(self.addr, &self.state.path, &self.state.token),
            Protocol::Imds { .. } => imds::child_env(self.addr),
        }
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
    if !loopback_host(state, req) {
        // DNS rebinding: a web page the user opened may resolve its own name to 127.0.0.1, but
        // the browser still sends that name as Host.
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the Host header must be 127.0.0.1 or localhost",
        );
    }
    let resp = match &state.protocol {
        Protocol::Container => ecs::respond(state, req),
        Protocol::Imds { role_name } => imds::respond(state, role_name, req),
    };
    tracing::trace!(method = %req.method(), status = resp.status().as_u16(), "endpoint request");
    resp
}

/// `Host` names this endpoint: 127.0.0.1 or localhost, with our port or none.
fn loopback_host(state: &State, req: &Request<Incoming>) -> bool {
    let Some(host) = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>() == Ok(state.port));
    port_ok && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost"))
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "method not allowed here",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn revoked(state: &State) -> bool {
    state.revoked.load(Ordering::SeqCst)
}

fn shutting_down() -> Response<Full<Bytes>> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ShuttingDown",
        "credwrap is exiting; its credentials are no longer served",
    )
}

/// The current credential, rendered once per credential by `render`, or 503 when there is none
/// fit to hand out.
fn serve_current(
    state: &State,
    render: impl FnOnce(&crate::role::Credential) -> Bytes,
) -> Response<Full<Bytes>> {
    if revoked(state) {
        return shutting_down();
    }
    match state.credentials.current() {
        Some(lease) => json(
            StatusCode::OK,
            lease
                .rendered
                .get_or_init(|| render(&lease.credential))
                .clone(),
        ),
        None => unavailable(),
    }
}

fn unavailable() -> Response<Full<Bytes>> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "CredentialsUnavailable",
        "credwrap could not refresh the role's credentials from STS and is retrying; see its log",
    )
}

/// Constant-time: the time taken does not tell how much of a guess was right.
fn secret_eq(got: Option<&HeaderValue>, expected: &str) -> bool {
    got.is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected.as_bytes())))
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
