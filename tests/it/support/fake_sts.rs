//! A strict fake STS on 127.0.0.1: it issues credentials that live as long as the test says,
//! rejects a call signed with an expired or unknown session with the error real STS gives,
//! can inject faults, and records every call.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The long-term source keys tests hand credwrap.
pub const SOURCE_KEY_ID: &str = "AKIAFAKESOURCE0001";
pub const SOURCE_SECRET: &str = "source-secret-Q9vX2mLr7TzK4pWb";
pub const SOURCE_ARN: &str = "arn:aws:iam::111111111111:user/source";
/// Static keys a hostile environment carries; if they reach STS, the identity shows it.
pub const HOSTILE_KEY_ID: &str = "AKIAHOSTILE0000001";
pub const HOSTILE_SECRET: &str = "hostile-secret-never-use";
pub const HOSTILE_ARN: &str = "arn:aws:iam::222222222222:user/hostile";

pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/deploy";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Call {
    pub action: String,
    pub params: HashMap<String, String>,
    pub access_key_id: Option<String>,
    /// The region of the signature's credential scope (`KEY/DATE/REGION/sts/aws4_request`).
    pub region: Option<String>,
}

/// A fault to answer the next requests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Throttling,
    ServerError,
    Slow(Duration),
    /// Nothing listens on the port: connections are refused.
    Refuse,
    /// HTTP 200 with a body that is not STS's XML (a captive portal, a broken proxy).
    Garbage,
    /// HTTP 502 with an empty body.
    Empty,
}

/// What `Expiration` the credentials issued from now on carry, whatever their real lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The year 2999.
    FarFuture,
}

#[derive(Clone)]
struct Issued {
    secret: String,
    token: String,
    expires: SystemTime,
    arn: String,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    issued: HashMap<String, Issued>,
    denied_roles: Vec<String>,
    /// Roles whose trust policy names one role as the only principal: (role, trusted role).
    trusts: Vec<(String, String)>,
    /// Web identity tokens must be JWTs whose `exp` has not passed, from this issuer.
    jwt_issuer: Option<String>,
    /// Web identity tokens accepted, with their subject.
    web_identity_subjects: Vec<String>,
    lifetime: Option<Duration>,
    /// How long GetSessionToken's sessions live, when a test compresses an MFA session.
    session_lifetime: Option<Duration>,
    /// SSO access tokens the portal takes (`aws sso login` made them), until when.
    sso_tokens: HashMap<String, SystemTime>,
    expiry: Option<Expiry>,
    fault: Option<Fault>,
    counter: u64,
}

pub struct FakeSts {
    addr: SocketAddr,
    /// A second port on the same STS that faults never touch, for the child's own calls, so a
    /// test can tell credwrap's trouble from the child's.
    client_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    listening: tokio::sync::watch::Sender<bool>,
    _client_listening: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeSts {
    pub fn start() -> FakeSts {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (listening, rx) = tokio::sync::watch::channel(true);
        runtime.spawn(serve(listener, addr, rx, Arc::clone(&state), true));
        let client_listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let client_addr = client_listener.local_addr().unwrap();
        let (client_listening, rx) = tokio::sync::watch::channel(true);
        runtime.spawn(serve(
            client_listener,
            client_addr,
            rx,
            Arc::clone(&state),
            false,
        ));
        FakeSts {
            addr,
            client_addr,
            state,
            listening,
            _client_listening: client_listening,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same STS on another address of this host (one a test created, such as a bridge's),
    /// faults left out, for SDKs in a network namespace; returns its URL.
    pub fn serve_on(&self, ip: std::net::IpAddr) -> String {
        let listener = self
            ._runtime
            .block_on(tokio::net::TcpListener::bind((ip, 0)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = self._client_listening.subscribe();
        self._runtime
            .spawn(serve(listener, addr, rx, Arc::clone(&self.state), false));
        format!("http://{addr}")
    }

    /// The same STS on a port that faults never touch.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.client_addr)
    }

    /// Credentials issued from now on live this long, whatever DurationSeconds asked for.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().lifetime = Some(lifetime);
    }

    /// The SSO portal (GetRoleCredentials, on the same address: `AWS_ENDPOINT_URL_SSO`) takes
    /// `token` until `expires`, as IAM Identity Center takes the token `aws sso login` cached.
    pub fn accept_sso_token(&self, token: &str, expires: SystemTime) {
        let mut st = self.state.lock().unwrap();
        st.sso_tokens.insert(token.to_string(), expires);
    }

    /// GetSessionToken's sessions (MFA) live `lifetime`, whatever was asked: an MFA session of
    /// seconds.
    pub fn set_session_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().session_lifetime = Some(lifetime);
    }

    /// Credentials issued from now on claim this expiry (`None`: the truth again). The fake
    /// itself still expires them after their real lifetime.
    pub fn set_expiry(&self, expiry: Option<Expiry>) {
        self.state.lock().unwrap().expiry = expiry;
    }

    /// From now on AssumeRoleWithWebIdentity takes only an unexpired JWT whose `iss` is
    /// `issuer`, as real STS does for a configured OIDC provider; an expired one gets
    /// ExpiredTokenException.
    pub fn require_jwts_from(&self, issuer: &str) {
        self.state.lock().unwrap().jwt_issuer = Some(issuer.to_string());
    }

    /// The `sub` of every web identity token accepted so far, in order.
    pub fn web_identity_subjects(&self) -> Vec<String> {
        self.state.lock().unwrap().web_identity_subjects.clone()
    }

    pub fn deny_role(&self, arn: &str) {
        self.state
            .lock()
            .unwrap()
            .denied_roles
            .push(arn.to_string());
    }

    /// `role` trusts only sessions of the role `principal`, as a chained role's trust policy
    /// does: anything else, a web identity token included, is refused.
    pub fn trust_only(&self, role: &str, principal: &str) {
        self.state
            .lock()
            .unwrap()
            .trusts
            .push((role.to_string(), principal.to_string()));
    }

    pub fn set_fault(&self, fault: Fault) {
        self.listening.send_replace(fault != Fault::Refuse);
        self.state.lock().unwrap().fault = Some(fault);
    }

    /// The distinct access keys that signed calls of `action`.
    pub fn keys_used_for(&self, action: &str) -> std::collections::BTreeSet<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .filter_map(|c| c.access_key_id)
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn count(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action == action).count()
    }

    /// When the most recently issued credential expires.
    pub fn latest_expiry(&self) -> Option<SystemTime> {
        self.state
            .lock()
            .unwrap()
            .issued
            .values()
            .map(|i| i.expires)
            .max()
    }

    /// Whose the credential with access key `key` is: the assumed-role ARN it was issued as.
    pub fn issued_as(&self, key: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .issued
            .get(key)
            .map(|i| i.arn.clone())
    }

    /// The secret parts of every credential issued so far (for leak checks).
    pub fn issued_secrets(&self) -> Vec<(String, String, String)> {
        self.state
            .lock()
            .unwrap()
            .issued
            .iter()
            .map(|(k, i)| (k.clone(), i.secret.clone(), i.token.clone()))
            .collect()
    }
}

/// Accepts while `listening` is true; while false the port is closed, so connections are refused.
async fn serve(
    mut listener: tokio::net::TcpListener,
    addr: SocketAddr,
    mut listening: tokio::sync::watch::Receiver<bool>,
    state: Arc<Mutex<State>>,
    faultable: bool,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let st = Arc::clone(&state);
                let mut refusing = listening.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&st), req, faultable));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    // Going down closes kept-alive connections too, as a crashed STS would.
                    tokio::select! {
                        _ = conn => {}
                        _ = refusing.wait_for(|on| !*on) => {}
                    }
                });
            }
            changed = listening.changed() => {
                if changed.is_err() {
                    return;
                }
                if !*listening.borrow_and_update() {
                    drop(listener);
                    if listening.wait_for(|on| *on).await.is_err() {
                        return;
                    }
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.set_reuseaddr(true).unwrap();
                    socket.bind(addr).unwrap();
                    listener = socket.listen(128).unwrap();
                }
            }
        }
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
    faultable: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut params: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(q) = parts.uri.query() {
        params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let scope: Vec<String> = header("authorization")
        .and_then(|a| {
            let rest = a.strip_prefix("AWS4-HMAC-SHA256 ")?;
            let cred = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))?;
            Some(cred.split('/').map(str::to_string).collect())
        })
        .unwrap_or_default();
    let access_key_id = scope.first().cloned();
    let region = scope.get(2).cloned();
    let action = params.get("Action").cloned().unwrap_or_default();

    let fault = {
        let mut st = state.lock().unwrap();
        st.calls.push(Call {
            action: action.clone(),
            params: params.clone(),
            access_key_id: access_key_id.clone(),
            region,
        });
        st.fault.filter(|_| faultable)
    };
    match fault {
        Some(Fault::Throttling) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "Throttling",
                "Rate exceeded",
            ))
        }
        Some(Fault::ServerError) => {
            return Ok(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Service is unavailable",
            ))
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Garbage) => {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/html")
                .body(Full::new(Bytes::from_static(
                    b"<html><body>Please log in to the proxy</body></html>",
                )))
                .unwrap())
        }
        Some(Fault::Empty) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Full::new(Bytes::new()))
                .unwrap())
        }
        Some(Fault::None | Fault::Refuse) | None => {}
    }

    if parts.uri.path() == "/federation/credentials" {
        return Ok(sso_role_credentials(
            &state,
            &params,
            header("x-amz-sso_bearer_token"),
        ));
    }
    // The one unsigned STS call: the web identity token is the credential.
    if action == "AssumeRoleWithWebIdentity" {
        return Ok(assume_role_with_web_identity(&state, &params));
    }
    let caller = match authenticate(
        &state,
        access_key_id.as_deref(),
        header("x-amz-security-token"),
    ) {
        Ok(arn) => arn,
        Err(resp) => return Ok(*resp),
    };
    Ok(match action.as_str() {
        "AssumeRole" => assume_role(&state, &caller, &params),
        "GetCallerIdentity" => caller_identity(&caller),
        "GetSessionToken" => session_token(&state, &caller, access_key_id.as_deref(), &params),
        _ => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "Could not find operation",
        ),
    })
}

/// Whether `role`'s trust policy lets `caller` (who signed, or "a web identity") assume it.
fn trusted(st: &State, role: &str, caller: &str) -> bool {
    st.trusts
        .iter()
        .filter(|(r, _)| r == role)
        .all(|(_, principal)| {
            // A session of arn:aws:iam::A:role/NAME is arn:aws:sts::A:assumed-role/NAME/SESSION.
            let session_of =
                principal
                    .replacen(":iam::", ":sts::", 1)
                    .replacen(":role/", ":assumed-role/", 1);
            caller.starts_with(&format!("{session_of}/"))
        })
}

/// Who signed the request, as STS would see it; the signature itself is not checked.
fn authenticate(
    state: &Mutex<State>,
    key: Option<&str>,
    token: Option<String>,
) -> Result<String, Box<Response<Full<Bytes>>>> {
    let key = key.ok_or_else(|| {
        Box::new(error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ))
    })?;
    match key {
        SOURCE_KEY_ID => return Ok(SOURCE_ARN.to_string()),
        HOSTILE_KEY_ID => return Ok(HOSTILE_ARN.to_string()),
        // Any other long-term key is a user of its own name, so a test can tell who signed.
        k if k.starts_with("AKIA") => return Ok(format!("arn:aws:iam::111111111111:user/{k}")),
        _ => {}
    }
    let issued = state.lock().unwrap().issued.get(key).cloned();
    let invalid = || {
        Box::new(error(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ))
    };
    let issued = issued.ok_or_else(invalid)?;
    if token.as_deref() != Some(issued.token.as_str()) {
        return Err(invalid());
    }
    if SystemTime::now() >= issued.expires {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "ExpiredToken",
            "The security token included in the request is expired",
        )));
    }
    Ok(issued.arn)
}

fn assume_role(
    state: &Mutex<State>,
    caller: &str,
    params: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let (Some(role_arn), Some(session)) = (params.get("RoleArn"), params.get("RoleSessionName"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn and RoleSessionName are required",
        );
    };
    let duration = duration_seconds(params, 3600);
    if !(900..=43200).contains(&duration) {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint",
        );
    }
    let mut st = state.lock().unwrap();
    if st.denied_roles.contains(role_arn) || !trusted(&st, role_arn, caller) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!("User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"),
        );
    }
    let lifetime = st.lifetime.unwrap_or(Duration::from_secs(duration));
    let arn = assumed_role_arn(role_arn, session);
    let creds = issue(&mut st, &arn, lifetime);
    ok(&format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleResult>{creds}\
         <AssumedRoleUser><AssumedRoleId>AROAFAKE:{session}</AssumedRoleId><Arn>{arn}</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>req</RequestId></ResponseMetadata>\
         </AssumeRoleResponse>"
    ))
}

/// DurationSeconds as the caller sent it, or STS's default for the action.
fn duration_seconds(params: &HashMap<String, String>, default: u64) -> u64 {
    params
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(default)
}

/// The ARN STS reports for a session of `role_arn`.
fn assumed_role_arn(role_arn: &str, session: &str) -> String {
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let account = role_arn.split(':').nth(4).unwrap_or("000000000000");
    format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}")
}

/// The SSO portal's GetRoleCredentials: a session of the permission set's role for an SSO
/// access token the test accepted and that has not expired, as JSON.
fn sso_role_credentials(
    state: &Mutex<State>,
    params: &HashMap<String, String>,
    token: Option<String>,
) -> Response<Full<Bytes>> {
    let mut st = state.lock().unwrap();
    let valid = token
        .as_ref()
        .and_then(|t| st.sso_tokens.get(t))
        .is_some_and(|expires| SystemTime::now() < *expires);
    if !valid {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", "UnauthorizedException")
            .body(Full::new(Bytes::from_static(
                br#"{"message":"Session token not found or invalid"}"#,
            )))
            .unwrap();
    }
    let account = params.get("account_id").cloned().unwrap_or_default();
    let role = params.get("role_name").cloned().unwrap_or_default();
    let arn = format!("arn:aws:sts::{account}:assumed-role/AWSReservedSSO_{role}/me");
    let lifetime = st.lifetime.unwrap_or(Duration::from_secs(3600));
    let (key, issued) = issue_keys(&mut st, &arn, lifetime);
    let millis = issued
        .expires
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let body = serde_json::json!({"roleCredentials": {
        "accessKeyId": key, "secretAccessKey": issued.secret,
        "sessionToken": issued.token, "expiration": millis as u64}});
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Records a new credential for `arn` and returns its `<Credentials>` element.
fn issue(st: &mut State, arn: &str, lifetime: Duration) -> String {
    let (key, issued) = issue_keys(st, arn, lifetime);
    let claimed = match st.expiry {
        None => issued.expires,
        Some(Expiry::FarFuture) => UNIX_EPOCH + Duration::from_secs(32_503_680_000),
    };
    format!(
        "<Credentials><AccessKeyId>{key}</AccessKeyId>\
         <SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken>\
         <Expiration>{}</Expiration></Credentials>",
        issued.secret,
        issued.token,
        humantime::format_rfc3339_seconds(claimed)
    )
}

/// Records a new credential for `arn`: its key and what STS keeps of it.
fn issue_keys(st: &mut State, arn: &str, lifetime: Duration) -> (String, Issued) {
    st.counter += 1;
    let n = st.counter;
    let key = format!("ASIAFAKEROLE{n:06}");
    // Whole seconds, as STS returns them.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let issued = Issued {
        secret: format!("role-secret-{n}-{:x}", nanos()),
        token: format!("role-session-token-{n}-{:x}", nanos().rotate_left(17)),
        expires: UNIX_EPOCH + Duration::from_secs(now) + lifetime,
        arn: arn.to_string(),
    };
    st.issued.insert(key.clone(), issued.clone());
    (key, issued)
}

fn assume_role_with_web_identity(
    state: &Mutex<State>,
    params: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let (Some(role_arn), Some(session), Some(token)) = (
        params.get("RoleArn"),
        params.get("RoleSessionName"),
        params.get("WebIdentityToken"),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn, RoleSessionName and WebIdentityToken are required",
        );
    };
    if token.len() < 4 {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidIdentityToken",
            "The web identity token that was passed could not be validated",
        );
    }
    let mut st = state.lock().unwrap();
    if let Some(issuer) = st.jwt_issuer.clone() {
        match jwt_claims(token) {
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdentityToken",
                    "The web identity token that was passed could not be validated",
                )
            }
            Some(c) if c["iss"] != issuer.as_str() => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdentityToken",
                    "No OpenIDConnect provider found in your account for this issuer",
                )
            }
            Some(c) if c["exp"].as_u64().unwrap_or(0) <= now_secs() => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ExpiredTokenException",
                    "Token expired: current date/time must be before the expiration date/time",
                )
            }
            Some(c) => {
                let sub = c["sub"].as_str().unwrap_or_default().to_string();
                st.web_identity_subjects.push(sub);
            }
        }
    }
    if !trusted(&st, role_arn, "a web identity") {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        );
    }
    let duration = duration_seconds(params, 3600);
    let lifetime = st.lifetime.unwrap_or(Duration::from_secs(duration));
    let arn = assumed_role_arn(role_arn, session);
    let creds = issue(&mut st, &arn, lifetime);
    ok(&format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult>{creds}\
         <SubjectFromWebIdentityToken>ci</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><AssumedRoleId>AROAFAKE:{session}</AssumedRoleId><Arn>{arn}</Arn></AssumedRoleUser>\
         </AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>req</RequestId></ResponseMetadata>\
         </AssumeRoleWithWebIdentityResponse>"
    ))
}

/// GetSessionToken: only long-term keys may call it, as in real STS.
fn session_token(
    state: &Mutex<State>,
    caller: &str,
    key: Option<&str>,
    params: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    if key.is_some_and(|k| k.starts_with("ASIA")) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Cannot call GetSessionToken with session credentials",
        );
    }
    if let Some(code) = params.get("TokenCode") {
        if code.len() != 6 || params.get("SerialNumber").is_none() {
            return error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "MultiFactorAuthentication failed",
            );
        }
    }
    let duration = duration_seconds(params, 43200);
    let mut st = state.lock().unwrap();
    // Session tokens live as asked, whatever lifetime the test set for role credentials, unless
    // the test compressed them too.
    let lifetime = st.session_lifetime.unwrap_or(Duration::from_secs(duration));
    let creds = issue(&mut st, caller, lifetime);
    ok(&format!(
        "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetSessionTokenResult>{creds}</GetSessionTokenResult>\
         <ResponseMetadata><RequestId>req</RequestId></ResponseMetadata></GetSessionTokenResponse>"
    ))
}

fn caller_identity(caller: &str) -> Response<Full<Bytes>> {
    let account = caller.split(':').nth(4).unwrap_or("000000000000");
    ok(&format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetCallerIdentityResult><Arn>{caller}</Arn><UserId>AIDAFAKE</UserId>\
         <Account>{account}</Account></GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>req-id</RequestId></ResponseMetadata>\
         </GetCallerIdentityResponse>"
    ))
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn ok(xml: &str) -> Response<Full<Bytes>> {
    xml_response(StatusCode::OK, xml.to_string())
}

/// A JWT's claims (its signature is not checked: the test's issuer makes no keys).
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    xml_response(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>req-err</RequestId></ErrorResponse>"
        ),
    )
}

fn xml_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
