//! The HTTP endpoint its clients' SDKs read their credentials from (the child's, or under
//! `--serve` every later process's), and, with `--container-host`, the one containers read
//! theirs from.
//!
//! The loopback listener listens on 127.0.0.1 only, on an ephemeral port, and speaks one of two protocols:
//! the container-credentials one ([`ecs`], a random path and a random token) or an
//! IMDSv2-compatible one ([`imds`], session tokens from `PUT /latest/api/token`). Containers get
//! the container-credentials protocol on a gateway address of a Docker network ([`gateway`]),
//! with secrets of their own. Every listener only reads the broker's current credential and never
//! waits on STS, so a request is answered from memory; each renders (and caches) its own
//! protocol's document and serves only credentials with its protocol's minimum remaining
//! lifetime left. This module owns what is common: the listeners, who gets a connection slot
//! ([`admission`]), the `Host` check and revocation.

mod admission;
mod ecs;
pub mod gateway;
// `/healthz` and the status door.
pub mod health;
// Prometheus metrics, when asked for.
mod http;
mod imds;
mod metrics;
pub mod named;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::broker::CredentialReader;
use crate::settings::limits::RoleArn;
use crate::settings::LoopbackProtocol;
use crate::sys::private_dir::PrivateDir;
use crate::sys::secret::Secret;
pub use gateway::Gateway;
use http::{Current, Reply};
pub use metrics::MetricsPlan;

/// Smallest buffer hyper accepts; SDK requests are a few hundred bytes.
const MAX_HEADER_BYTES: usize = 8192;
/// How much life a credential must have left for the container protocol's clients (and for
/// `credential_process` clients, which botocore refreshes in the same windows).
pub const CONTAINER_MIN_REMAINING: Duration = ecs::MIN_REMAINING;
/// The variable that tells the command where the containers' env file is.
pub const ENV_CONTAINER_ENV_FILE: &str = "CREDWRAP_CONTAINER_ENV_FILE";
/// Where the container roles' env files are, one `NAME.env` each.
pub const ENV_CONTAINER_ENV_DIR: &str = "CREDWRAP_CONTAINER_ENV_DIR";

/// Writes one env file for `docker run --env-file`: `lines`, the region, and no fallback to an
/// instance role (containers have none of credwrap's).
fn write_env_file(
    dir: &PrivateDir,
    name: &str,
    mut lines: Vec<String>,
    region: Option<&str>,
) -> Result<std::path::PathBuf, StartError> {
    if let Some(region) = region {
        lines.push(format!("AWS_REGION={region}"));
        lines.push(format!("AWS_DEFAULT_REGION={region}"));
    }
    lines.push("AWS_EC2_METADATA_DISABLED=true".into());
    let mut text = lines.join("\n");
    text.push('\n');
    dir.write(name, &text).map_err(|e| StartError::files(&e))
}

/// Why the endpoint could not start, and what to do about it: each cause has its own hint.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub hint: &'static str,
}

impl StartError {
    fn listen(e: impl std::fmt::Display) -> StartError {
        StartError {
            message: e.to_string(),
            hint: "credwrap needs a TCP port on 127.0.0.1 (and on each --container-host address)",
        }
    }

    fn random(e: impl std::fmt::Display) -> StartError {
        StartError {
            message: e.to_string(),
            hint: "credwrap's secrets come from the kernel's getrandom(2): a seccomp profile or a \
                   kernel older than 3.17 may refuse it",
        }
    }

    fn files(e: &anyhow::Error) -> StartError {
        StartError {
            message: format!("{e:#}"),
            hint: "check that TMPDIR is writable",
        }
    }
}

impl From<StartError> for crate::exit::Failure {
    fn from(e: StartError) -> crate::exit::Failure {
        crate::exit::Failure::setup(e.message, e.hint)
    }
}

/// The endpoint to start: the settings' `EndpointPlan`, completed with what the first
/// AssumeRole told (the role, the region). [`Endpoint`] is what runs from it.
pub struct EndpointSpec {
    /// The protocol of the loopback listener, which serves the command, or with `--serve` the
    /// later processes.
    pub loopback: LoopbackProtocol,
    /// Gateway addresses containers reach, checked.
    pub gateways: Vec<Gateway>,
    /// The default role, which IMDS lists under `security-credentials/`; none in a job of
    /// named roles only.
    pub role: Option<RoleArn>,
    /// For IMDS's placement and the containers' env file.
    pub region: Option<String>,
    /// Extra roles the loopback listener serves under their names, each from its own broker.
    pub named: Vec<(String, CredentialReader)>,
    /// Roles for the containers of a name, on every gateway, each from its own broker.
    pub container_roles: Vec<(String, CredentialReader)>,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: MetricsPlan,
}

impl EndpointSpec {
    /// The longest remaining lifetime any listener's clients need: what the broker must
    /// refresh in time for.
    pub fn min_remaining(&self) -> Duration {
        let loopback = match self.loopback {
            LoopbackProtocol::Ecs(_) => ecs::MIN_REMAINING,
            LoopbackProtocol::Imds => imds::MIN_REMAINING,
        };
        if self.gateways.is_empty() {
            loopback
        } else {
            loopback.max(ecs::MIN_REMAINING)
        }
    }
}

/// A listener's protocol state.
enum Service {
    Ecs(ecs::EcsService),
    Imds(imds::ImdsService),
}

impl Service {
    fn min_remaining(&self) -> Duration {
        match self {
            Service::Ecs(_) => ecs::MIN_REMAINING,
            Service::Imds(_) => imds::MIN_REMAINING,
        }
    }
}

/// What one listener's connections share.
struct Shared {
    /// The default role's credential; none in a job of named roles only.
    reader: Option<CredentialReader>,
    service: Service,
    /// The names a request's Host may give, with our port or none.
    names: Vec<String>,
    port: u16,
    /// For a gateway listener: where requests may come from.
    peers: Option<Gateway>,
    revoked: Arc<AtomicBool>,
    /// This listener's rendering of the current credential: its protocol's own document.
    rendered: http::RenderCache,
    /// How many connections it may hold at once.
    capacity: usize,
    /// The named roles, on the loopback listener only.
    named: Option<named::NamedRoles>,
    /// The status door's secret: on the loopback listener only (`None` there: IMDS, which has
    /// none), and with every listener's address.
    status: Option<StatusDoor>,
    /// This listener's address, as the metrics name it.
    label: String,
    /// What the listeners count for the metrics, when they are served.
    counters: Option<Arc<metrics::Counters>>,
}

/// What a listener serves besides its protocol's own door.
struct Doors {
    named: Option<named::NamedRoles>,
    status: Option<StatusDoor>,
}

/// `/credwrap/status` on the loopback listener: the secret it asks for, if any, and the
/// listeners it lists.
struct StatusDoor {
    secret: Option<Secret>,
    listeners: Arc<std::sync::RwLock<Vec<(String, &'static str)>>>,
    /// `--metrics`: `/metrics` behind the same secret.
    metrics: Option<Arc<metrics::Scrape>>,
}

/// The running listeners; [`Endpoint::close`] revokes their secrets and stops them.
pub struct Endpoint {
    /// Connections per listener, from the open-file limit shared by all the spec.
    capacity: usize,
    client_env: Vec<(&'static str, Secret)>,
    /// Each named role's name and the URI its credential is read from.
    named_uris: Vec<(String, String)>,
    revoked: Arc<AtomicBool>,
    accept_loops: Vec<JoinHandle<()>>,
    /// Every listener's address and protocol, for the status door.
    listeners: Arc<std::sync::RwLock<Vec<(String, &'static str)>>>,
    /// Where `credwrap status` asks, and with what secret.
    status_target: Option<(String, Option<Secret>)>,
    /// What the metrics read, when they are served.
    scrape: Option<Arc<metrics::Scrape>>,
}

impl Endpoint {
    /// Binds the listeners and starts serving on the current tokio runtime. Files (the token
    /// file, the containers' env file) go into `dir`.
    pub async fn start(
        reader: Option<CredentialReader>,
        spec: EndpointSpec,
        dir: &PrivateDir,
    ) -> Result<Endpoint, StartError> {
        let count = 1 + spec.gateways.len();
        let mut endpoint = Endpoint {
            capacity: admission::capacity(crate::sys::lockdown::open_file_limit(), count),
            client_env: Vec::new(),
            named_uris: Vec::new(),
            revoked: Arc::new(AtomicBool::new(false)),
            accept_loops: Vec::new(),
            listeners: Arc::default(),
            status_target: None,
            scrape: spec
                .metrics
                .wanted()
                .then(|| Arc::new(metrics_scrape(reader.as_ref(), &spec))),
        };
        let service = match spec.loopback {
            LoopbackProtocol::Ecs(delivery) => Service::Ecs(ecs::EcsService::new(dir, delivery)?),
            LoopbackProtocol::Imds => {
                let Some(role) = spec.role.clone() else {
                    return Err(StartError::listen(
                        "IMDS serves the default role; there is none",
                    ));
                };
                tracing::warn!(
                    "IMDS mode: any local process that can reach 127.0.0.1 can read the \
                     role's credentials from the endpoint; the default container mode \
                     requires a token"
                );
                Service::Imds(imds::ImdsService::new(role, spec.region.clone()))
            }
        };
        // With no default role, nothing points an SDK at the loopback listener: the named
        // roles' secret is then their own.
        let named = match &service {
            _ if spec.named.is_empty() => None,
            Service::Ecs(ecs) if reader.is_some() => {
                Some(named::NamedRoles::new(spec.named, ecs.token())?)
            }
            _ => Some(named::NamedRoles::new(spec.named, None)?),
        };
        endpoint.client_env = endpoint
            .start_loopback(&reader, service, named, spec.metrics.on_loopback)
            .await?;
        endpoint.write_status_target(dir)?;
        if let Some(addr) = spec.metrics.address {
            endpoint.start_metrics(addr)?;
        }
        let mut env_files = None;
        for gateway in &spec.gateways {
            let roles = spec.container_roles.clone();
            let lines = endpoint.start_gateway(&reader, gateway, roles).await?;
            env_files.get_or_insert(lines);
        }
        if let Some((default, roles)) = env_files {
            let region = spec.region.as_deref();
            if reader.is_some() {
                let path = write_env_file(dir, "container.env", default, region)?;
                let path = Secret::new(path.to_string_lossy());
                endpoint.client_env.push((ENV_CONTAINER_ENV_FILE, path));
            }
            if !roles.is_empty() {
                let sub = dir
                    .subdir("containers")
                    .map_err(|e| StartError::files(&e))?;
                for (name, lines) in roles {
                    write_env_file(dir, &format!("containers/{name}.env"), lines, region)?;
                }
                let sub = Secret::new(sub.to_string_lossy());
                endpoint.client_env.push((ENV_CONTAINER_ENV_DIR, sub));
            }
        }
        Ok(endpoint)
    }

    /// The command's listener on 127.0.0.1; returns the variables that point its SDK there.
    async fn start_loopback(
        &mut self,
        reader: &Option<CredentialReader>,
        service: Service,
        named: Option<named::NamedRoles>,
        metrics: bool,
    ) -> Result<Vec<(&'static str, Secret)>, StartError> {
        let listener = admission::listen((Ipv4Addr::LOCALHOST, 0).into())
            .map_err(|e| StartError::listen(format!("could not listen on 127.0.0.1: {e}")))?;
        let addr = listener.local_addr().map_err(StartError::listen)?;
        // URIs use the literal 127.0.0.1, the one host every SDK version accepts over plain
        // HTTP (`localhost` may resolve to ::1).
        let mut env = match (&service, reader) {
            (_, None) => vec![("AWS_EC2_METADATA_DISABLED", Secret::new("true"))],
            (Service::Ecs(c), Some(_)) => c.client_env(addr),
            (Service::Imds(i), Some(_)) => i.client_env(addr),
        };
        if let Some(named) = &named {
            env.extend(named.client_env());
            self.named_uris = named.uris(addr);
        }
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let secret = match (&named, &service) {
            (Some(n), _) if n.own_token().is_some() => n.own_token().cloned(),
            (_, Service::Ecs(ecs)) => ecs.token(),
            (_, Service::Imds(_)) => None,
        };
        let protocol = match service {
            Service::Ecs(_) => "container credentials",
            Service::Imds(_) => "IMDSv2",
        };
        self.listed(addr, protocol);
        self.status_target = Some((
            format!("http://{addr}{}", health::STATUS_PATH),
            secret.clone(),
        ));
        let status = StatusDoor {
            secret,
            listeners: Arc::clone(&self.listeners),
            metrics: self.scrape.clone().filter(|_| metrics),
        };
        let doors = Doors {
            named,
            status: Some(status),
        };
        self.spawn_listener(listener, reader, service, names, None, doors);
        tracing::debug!(%addr, "credential endpoint listening");
        Ok(env)
    }

    /// A listener for containers on `gateway`, with a door for each container role; returns
    /// its lines of the default env file, and each container role's.
    async fn start_gateway(
        &mut self,
        reader: &Option<CredentialReader>,
        gateway: &Gateway,
        roles: Vec<(String, CredentialReader)>,
    ) -> Result<(Vec<String>, Vec<(String, Vec<String>)>), StartError> {
        let (listener, form) = gateway.bind().await.map_err(StartError::listen)?;
        let addr = listener.local_addr().map_err(StartError::listen)?;
        let full = form == gateway::UriForm::Full;
        let service = ecs::EcsService::for_gateway(full)?;
        let lines = service.gateway_env_lines(addr, form);
        let named = (!roles.is_empty())
            .then(|| named::NamedRoles::for_gateway(roles, full))
            .transpose()?;
        let role_lines = named
            .as_ref()
            .map(|n| n.gateway_env_lines(addr, form))
            .unwrap_or_default();
        let name = match gateway.ip {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        self.listed(addr, "container credentials (containers)");
        self.spawn_listener(
            listener,
            reader,
            Service::Ecs(service),
            vec![name],
            Some(gateway.clone()),
            Doors {
                named,
                status: None,
            },
        );
        tracing::info!(%addr, interfaces = %gateway.interfaces.join(","), "serving containers");
        Ok((lines, role_lines))
    }

    fn spawn_listener(
        &mut self,
        listener: TcpListener,
        reader: &Option<CredentialReader>,
        service: Service,
        names: Vec<String>,
        peers: Option<Gateway>,
        doors: Doors,
    ) {
        let Doors { named, status } = doors;
        let local = listener.local_addr();
        let port = local.as_ref().map(|a| a.port()).unwrap_or_default();
        let label = local.map(|a| a.to_string()).unwrap_or_default();
        let shared = Arc::new(Shared {
            reader: reader.clone(),
            service,
            names,
            port,
            peers,
            revoked: Arc::clone(&self.revoked),
            rendered: http::RenderCache::default(),
            capacity: self.capacity,
            named,
            status,
            label,
            counters: self.scrape.as_ref().map(|s| Arc::clone(&s.counters)),
        });
        self.accept_loops
            .push(tokio::spawn(accept(listener, shared)));
    }

    /// `--metrics-address`: a listener of its own that serves `/metrics` and nothing else.
    fn start_metrics(&mut self, addr: std::net::SocketAddr) -> Result<(), StartError> {
        let Some(scrape) = self.scrape.clone() else {
            return Ok(());
        };
        let listener = admission::listen(addr).map_err(|e| {
            StartError::listen(format!("could not listen on {addr} for metrics: {e}"))
        })?;
        let addr = listener.local_addr().map_err(StartError::listen)?;
        self.listed(addr, "Prometheus metrics");
        tracing::info!(%addr, "serving metrics");
        self.accept_loops
            .push(tokio::spawn(metrics_only(listener, scrape)));
        Ok(())
    }

    fn listed(&self, addr: std::net::SocketAddr, protocol: &'static str) {
        let mut listeners = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        listeners.push((addr.to_string(), protocol));
    }

    /// Where `credwrap status --pid` finds this credwrap: the status door's URI and its
    /// secret, in the private directory (0700, this user's), which only the same user can
    /// read, as the command's own environment.
    fn write_status_target(&self, dir: &PrivateDir) -> Result<(), StartError> {
        let Some((uri, secret)) = &self.status_target else {
            return Ok(());
        };
        let secret = secret.as_ref().map(Secret::expose).unwrap_or_default();
        dir.write(health::STATUS_FILE, &format!("{uri}\n{secret}\n"))
            .map(drop)
            .map_err(|e| StartError::files(&e))
    }

    /// The variables that point a client's SDK at the loopback listener, and the command (or
    /// the later processes) at the containers' env file.
    pub fn client_env(&self) -> Vec<(&'static str, Secret)> {
        self.client_env.clone()
    }

    /// Where the loopback listener serves the default role as a container endpoint (which
    /// `credwrap --credential-process` reads too), if it does.
    pub fn default_uri(&self) -> Option<String> {
        self.client_env
            .iter()
            .find(|(k, _)| *k == ecs::ENV_FULL_URI)
            .map(|(_, v)| v.expose().to_string())
    }

    /// Each named role's name and the URI `credwrap --credential-process` reads it from.
    pub fn named_uris(&self) -> &[(String, String)] {
        &self.named_uris
    }

    /// Revokes the secrets for requests still in flight on open connections, and stops
    /// accepting.
    pub fn close(self) {
        self.revoked.store(true, Ordering::SeqCst);
        for accept_loop in self.accept_loops {
            accept_loop.abort();
        }
    }
}

/// Accepts connections as long as [`admission`] has a slot for them (until then they wait in
/// the listen queue), then serves each in a task of its own.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let admission = Arc::new(admission::Admission::new(shared.capacity));
    loop {
        admission.room().await;
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(host) = &shared.peers {
                    if !host.admits(peer.ip()) {
                        // Routed to the address through this host from another network.
                        tracing::debug!(%peer, "refused a connection from outside the container network");
                        continue;
                    }
                }
                // Admitted here, in order, so that the next `room` counts this one.
                let (conn, header_timeout) = admission.admit();
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&shared),
                    Arc::clone(&admission),
                    conn,
                    header_timeout,
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
    conn: Arc<admission::Conn>,
    header_timeout: Duration,
) {
    let io = TokioIo::new(admission.track(stream, &conn));
    let (counted, counter) = (Arc::clone(&conn), Arc::clone(&admission));
    let listener = Arc::clone(&shared);
    let service = service_fn(move |req| {
        let mut resp = answer(&shared, &req);
        let refused = resp.status().is_client_error() || resp.status().is_server_error();
        let metrics = shared.counters.as_deref();
        if let Some(m) = metrics {
            m.request(&shared.label, resp.status().as_u16());
        }
        if !counter.request(&counted, refused) {
            // This client has had its share of one connection: it may open another.
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            if let Some(m) = metrics {
                m.closed(&shared.label, "after_its_share");
            }
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
        () = conn.evicted() => {
            tracing::debug!("endpoint connection closed to make room");
            if let Some(m) = &listener.counters {
                m.closed(&listener.label, "to_make_room");
            }
        }
    }
    admission.leave(&conn);
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if let Some(why) = malformed(shared, req) {
        return http::error_reply(StatusCode::BAD_REQUEST, "BadRequest", why);
    }
    let host_ok = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| names_this_endpoint(shared, host));
    if !host_ok {
        // DNS rebinding: a web page the user opened may resolve its own name to 127.0.0.1, but
        // the browser still sends that name as Host.
        return http::error_reply(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the Host header must name this endpoint (127.0.0.1 or localhost)",
        );
    }
    let revoked = shared.revoked.load(Ordering::SeqCst);
    if let Some(resp) = health_reply(shared, req, revoked) {
        return resp;
    }
    let named = shared.named.as_ref().and_then(|n| n.respond(revoked, req));
    let resp = match (named, &shared.reader) {
        (Some(resp), _) => resp,
        // No default role: what is no named role's door is nothing at all.
        (None, None) => http::error_reply(StatusCode::NOT_FOUND, "NotFound", "no such resource"),
        (None, Some(reader)) => {
            let current = Current {
                reader,
                revoked,
                min_remaining: shared.service.min_remaining(),
                rendered: &shared.rendered,
            };
            match &shared.service {
                Service::Ecs(c) => c.respond(&current, req),
                Service::Imds(i) => i.respond(&current, req),
            }
        }
    };
    tracing::trace!(method = %req.method(), status = resp.status().as_u16(), "endpoint request");
    resp
}

/// `/healthz` on every listener, and the status door on the loopback listener; `None` for
/// every other path.
fn health_reply(shared: &Shared, req: &Request<Incoming>, revoked: bool) -> Option<Reply> {
    let path = req.uri().path();
    let door = match (path, &shared.status) {
        (health::HEALTH_PATH, _) => None,
        (health::STATUS_PATH, Some(door)) => Some(door),
        (METRICS_PATH, Some(door)) if door.metrics.is_some() => Some(door),
        _ => return None,
    };
    if req.method() != hyper::Method::GET {
        return Some(http::method_not_allowed("GET"));
    }
    let mut roles = Vec::new();
    if let Some(reader) = &shared.reader {
        roles.push(health::Served {
            name: None,
            reader,
            min_remaining: shared.service.min_remaining(),
        });
    }
    if let Some(named) = &shared.named {
        roles.extend(named.served());
    }
    let Some(door) = door else {
        return Some(health::healthz(&roles, revoked));
    };
    if let Some(secret) = &door.secret {
        let got = req
            .headers()
            .get(AUTHORIZATION)
            .or_else(|| req.headers().get("x-aws-ec2-metadata-token"));
        // Prometheus sends a credential only with a scheme: `Bearer TOKEN`, for the metrics.
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|_| path == METRICS_PATH)
            .is_some_and(|t| http::bytes_eq(t.as_bytes(), secret.expose().as_bytes()));
        if !bearer && !http::secret_eq(got, secret.expose()) {
            return Some(http::error_reply(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the Authorization header must be the endpoint's token",
            ));
        }
    }
    if let (METRICS_PATH, Some(scrape)) = (path, &door.metrics) {
        return Some(metrics_reply(scrape));
    }
    let listeners = door.listeners.read().unwrap_or_else(|e| e.into_inner());
    Some(health::status(&roles, revoked, &listeners))
}

const METRICS_PATH: &str = "/metrics";

fn metrics_reply(scrape: &metrics::Scrape) -> Reply {
    let body = bytes::Bytes::from(scrape.render());
    http::with_type(StatusCode::OK, body, metrics::CONTENT_TYPE)
}

/// Every role the metrics report: the default one, the named ones and the container ones (a
/// role that is both is reported once), each with the remaining lifetime its clients need.
fn metrics_scrape(reader: Option<&CredentialReader>, spec: &EndpointSpec) -> metrics::Scrape {
    let mut roles: Vec<metrics::Role> = Vec::new();
    if let Some(reader) = reader {
        roles.push(metrics::Role {
            name: health::DEFAULT_NAME.to_string(),
            reader: reader.clone(),
            min_remaining: spec.min_remaining(),
        });
    }
    for (name, reader) in spec.named.iter().chain(&spec.container_roles) {
        if roles.iter().all(|r| &r.name != name) {
            roles.push(metrics::Role {
                name: name.clone(),
                reader: reader.clone(),
                min_remaining: ecs::MIN_REMAINING,
            });
        }
    }
    metrics::Scrape {
        counters: Arc::default(),
        roles,
    }
}

/// `--metrics-address`'s listener: `GET /metrics` and nothing else, a few connections at a
/// time (a scraper needs one).
async fn metrics_only(listener: TcpListener, scrape: Arc<metrics::Scrape>) {
    const CONNECTIONS: usize = 16;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let scrape = Arc::clone(&scrape);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = match (req.method(), req.uri().path()) {
                    (&hyper::Method::GET, METRICS_PATH) => metrics_reply(&scrape),
                    (_, METRICS_PATH) => http::method_not_allowed("GET"),
                    _ => http::error_reply(StatusCode::NOT_FOUND, "NotFound", "no such resource"),
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = served.await {
                tracing::debug!("metrics connection ended: {e}");
            }
            drop(slot);
        });
    }
}

/// Requests no SDK sends, refused before anything else: a credential header given twice (which
/// one a proxy or a server reads differs), and an absolute-form URI naming another host.
fn malformed(shared: &Shared, req: &Request<Incoming>) -> Option<&'static str> {
    let headers = req.headers();
    for name in [AUTHORIZATION.as_str(), "x-aws-ec2-metadata-token"] {
        if headers.get_all(name).iter().count() > 1 {
            return Some("a credential header appears more than once");
        }
    }
    match req.uri().authority() {
        Some(authority) if !names_this_endpoint(shared, authority.as_str()) => {
            Some("the request URI names another host")
        }
        _ => None,
    }
}

/// `host[:port]` is one of the listener's names, with its port or none.
fn names_this_endpoint(shared: &Shared, host: &str) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((name, p)) if !p.contains(']') => (name, Some(p)),
        _ => (host, None),
    };
    let port_ok = given_port.is_none_or(|p| p.parse::<u16>() == Ok(shared.port));
    port_ok && shared.names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::broker::{Broker, Reassume, WallClock};
    use crate::role::credential::RoleCredential;
    use crate::role::AssumeError;

    /// An STS that is never asked: the credential lives an hour.
    struct NeverAsked;

    impl Reassume for NeverAsked {
        async fn reassume(&mut self) -> Result<RoleCredential, AssumeError> {
            std::future::pending().await
        }
    }

    fn hour_long_credential() -> RoleCredential {
        let now = SystemTime::now();
        RoleCredential {
            access_key_id: "ASIAREVOKED".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            received: now,
            expiration: now + Duration::from_secs(3600),
            account_id: "123456789012".into(),
            assumed_role_arn: String::new(),
        }
    }

    /// One keep-alive GET on `stream`; the response's head and body as text.
    async fn keep_alive_get(stream: &mut TcpStream, addr: &str, path: &str, token: &str) -> String {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// What `Started::stop` does first when the command exits: a request on a connection still
    /// open gets no credential, and nothing new is accepted.
    #[tokio::test]
    async fn closing_revokes_open_connections_and_stops_listening() {
        let dir = PrivateDir::create(None).unwrap();
        let broker = Broker::start(
            NeverAsked,
            hour_long_credential(),
            ecs::MIN_REMAINING,
            Arc::new(WallClock),
        );
        let listeners = EndpointSpec {
            loopback: LoopbackProtocol::Ecs(crate::settings::TokenDelivery::Variable),
            named: Vec::new(),
            container_roles: Vec::new(),
            gateways: Vec::new(),
            role: "arn:aws:iam::123456789012:role/r".parse().ok(),
            region: None,
            metrics: MetricsPlan::default(),
        };
        let endpoint = Endpoint::start(Some(broker.reader()), listeners, &dir)
            .await
            .unwrap();
        let env = endpoint.client_env();
        let value = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .unwrap()
                .1
                .expose()
                .to_string()
        };
        let uri = value(ecs::ENV_FULL_URI);
        let token = value(ecs::ENV_TOKEN);
        let rest = uri.strip_prefix("http://").unwrap();
        let (addr, path) = rest.split_at(rest.find('/').unwrap());

        let mut open = TcpStream::connect(addr).await.unwrap();
        let before = keep_alive_get(&mut open, addr, path, &token).await;
        assert!(
            before.starts_with("HTTP/1.1 200") && before.contains("ASIAREVOKED"),
            "{before}"
        );
        endpoint.close();
        let after = keep_alive_get(&mut open, addr, path, &token).await;
        assert!(
            !after.contains("ASIAREVOKED"),
            "served after close: {after}"
        );
        assert!(
            after.is_empty() || after.contains("ShuttingDown"),
            "{after}"
        );
        // The accept loop is gone, and with it the listening socket.
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "still accepting after close");
    }
}
