//! The loopback HTTP endpoint the child's SDK reads its credentials from.
//!
//! It listens on 127.0.0.1 only, on an ephemeral port, and speaks one of two protocols: the
//! container-credentials one ([`ecs`], a random path and a random token) or an IMDSv2-compatible
//! one ([`imds`], session tokens from `PUT /latest/api/token`). It only reads the broker's current
//! credential and never waits on STS, so a request is answered from memory. This module owns what
//! is common: the listener, the connection limits, the `Host` check and revocation.

mod admission;
mod ecs;
mod http;
mod imds;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::broker::CredentialReader;
use crate::limits::RoleArn;
use crate::private_dir::PrivateDir;
use crate::secret::Secret;
use http::{Current, Reply};

/// Smallest buffer hyper accepts; SDK requests are a few hundred bytes.
const MAX_HEADER_BYTES: usize = 8192;

/// Which protocol the endpoint speaks, as the command line chose it.
pub enum Protocol {
    /// Container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`); with `token_file`, the
    /// token reaches the child as a file instead of a variable.
    Container { token_file: bool },
    /// IMDSv2, listing this role under `security-credentials/`, in this region.
    Imds {
        role: RoleArn,
        region: Option<String>,
    },
}

impl Protocol {
    /// How much life a credential must have left to be served: what this protocol's clients
    /// need (IMDS clients stretch an expiring credential, so they need more).
    pub fn guard(&self) -> Duration {
        match self {
            Protocol::Container { .. } => crate::broker::CONTAINER_GUARD,
            Protocol::Imds { .. } => crate::broker::IMDS_GUARD,
        }
    }
}

/// The protocol's own state.
enum Service {
    Container(ecs::Container),
    Imds(imds::Imds),
}

struct Shared {
    reader: CredentialReader,
    service: Service,
    /// The port we listen on, for the Host check.
    port: u16,
    revoked: AtomicBool,
}

/// A running endpoint; [`Endpoint::close`] revokes its token and stops it.
pub struct Endpoint {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl Endpoint {
    /// Binds the listener and starts serving on the current tokio runtime. Files the child needs
    /// (the token file) go into `dir`.
    pub async fn start(
        reader: CredentialReader,
        protocol: Protocol,
        dir: &PrivateDir,
    ) -> anyhow::Result<Endpoint> {
        let service = match protocol {
            Protocol::Container { token_file } => {
                Service::Container(ecs::Container::new(dir, token_file)?)
            }
            Protocol::Imds { role, region } => {
                tracing::warn!(
                    "IMDS mode: any local process that can reach 127.0.0.1 can read the role's \
                     credentials from the endpoint; the default container mode requires a token"
                );
                Service::Imds(imds::Imds::new(role, region))
            }
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("could not listen on 127.0.0.1")?;
        let addr = listener.local_addr().context("no local address")?;
        let shared = Arc::new(Shared {
            reader,
            service,
            port: addr.port(),
            revoked: AtomicBool::new(false),
        });
        let accept_loop = tokio::spawn(accept(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, "credential endpoint listening");
        Ok(Endpoint {
            shared,
            addr,
            accept_loop,
        })
    }

    /// The variables that point an SDK at this endpoint. URIs use the literal 127.0.0.1, the
    /// one host every SDK version accepts over plain HTTP (`localhost` may resolve to ::1).
    pub fn child_env(&self) -> Vec<(&'static str, Secret)> {
        match &self.shared.service {
            Service::Container(c) => c.child_env(self.addr),
            Service::Imds(i) => i.child_env(self.addr),
        }
    }

    /// Revokes the token for requests still in flight on open connections, and stops accepting.
    pub fn close(self) {
        self.shared.revoked.store(true, Ordering::SeqCst);
        self.accept_loop.abort();
    }
}

/// Accepts every connection at once; [`admission`] decides who keeps a slot.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let admission = Arc::new(admission::Admission::new());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&shared),
                    Arc::clone(&admission),
                ));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!("endpoint accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    admission: Arc<admission::Admission>,
) {
    let (conn, header_timeout) = admission.admit();
    let io = TokioIo::new(admission.track(stream, &conn));
    let counted = Arc::clone(&conn);
    let service = service_fn(move |req| {
        let mut resp = respond(&shared, &req);
        if !counted.request() {
            // This client has had its share of one connection: it may open another.
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        async move { Ok::<_, Infallible>(resp) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(io, service);
    tokio::select! {
        ended = served => if let Err(e) = ended {
            tracing::debug!("endpoint connection ended: {e}");
        },
        () = conn.evicted() => tracing::debug!("endpoint connection closed to make room"),
    }
    admission.leave(&conn);
}

fn respond(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if let Some(why) = malformed(shared.port, req) {
        return http::error(StatusCode::BAD_REQUEST, "BadRequest", why);
    }
    if !loopback_host(shared.port, req) {
        // DNS rebinding: a web page the user opened may resolve its own name to 127.0.0.1, but
        // the browser still sends that name as Host.
        return http::error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the Host header must be 127.0.0.1 or localhost",
        );
    }
    let current = Current {
        reader: &shared.reader,
        revoked: shared.revoked.load(Ordering::SeqCst),
    };
    let resp = match &shared.service {
        Service::Container(c) => c.respond(&current, req),
        Service::Imds(i) => i.respond(&current, req),
    };
    tracing::trace!(method = %req.method(), status = resp.status().as_u16(), "endpoint request");
    resp
}

/// Requests no SDK sends, refused before anything else: a credential header given twice (which
/// one a proxy or a server reads differs), and an absolute-form URI naming another host.
fn malformed(port: u16, req: &Request<Incoming>) -> Option<&'static str> {
    let headers = req.headers();
    for name in [AUTHORIZATION.as_str(), "x-aws-ec2-metadata-token"] {
        if headers.get_all(name).iter().count() > 1 {
            return Some("a credential header appears more than once");
        }
    }
    match req.uri().authority() {
        Some(authority) if !names_this_endpoint(authority.as_str(), port) => {
            Some("the request URI names another host")
        }
        _ => None,
    }
}

/// `Host` names this endpoint: 127.0.0.1 or localhost, with our port or none.
fn loopback_host(port: u16, req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| names_this_endpoint(host, port))
}

/// `host[:port]` is 127.0.0.1 or localhost, with our port or none.
fn names_this_endpoint(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((name, p)) => (name, Some(p)),
        None => (host, None),
    };
    let port_ok = given_port.is_none_or(|p| p.parse::<u16>() == Ok(port));
    port_ok && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost"))
}
