//! A fake of GitHub Actions' OIDC token service on 127.0.0.1, as a job with
//! `permissions: id-token: write` reaches it: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD`
//! with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered with
//! `{"count":1,"value":"<JWT>"}`. It checks the bearer and the audience, issues JWT-shaped tokens
//! (issuer [`ISSUER`], a `sub` that counts up) that expire after the lifetime the test sets,
//! counts requests, and fails on command.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub const ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The runtime token the runner gives the job.
pub const BEARER: &str = "runtime-token-for-this-job";

struct State {
    lifetime: Duration,
    requests: usize,
    issued: usize,
    /// Answer the next requests with these statuses, in order.
    failing: std::collections::VecDeque<u16>,
    audiences: Vec<String>,
}

pub struct TokenService {
    url: String,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

/// A JWT (unsigned: the fake STS does not check signatures) with these claims.
pub fn jwt(claims: serde_json::Value) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT","kid":"test"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"not-a-signature")
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TokenService {
    /// Tokens that live `lifetime`.
    pub fn start(lifetime: Duration) -> TokenService {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            lifetime,
            requests: 0,
            issued: 0,
            failing: Default::default(),
            audiences: Vec::new(),
        }));
        let st = Arc::clone(&state);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = Arc::clone(&st);
                        async move { Ok::<_, Infallible>(answer(&st, &req)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TokenService {
            // The real URL already has a query, and the client appends `&audience=`.
            url: format!("http://{addr}/_apis/distributedtask/hubs/Actions/plans/p/jobs/j/idtoken?api-version=2.0"),
            state,
            _runtime: runtime,
        }
    }

    /// The variables a job with `permissions: id-token: write` has.
    pub fn job_env(&self) -> [(&'static str, String); 2] {
        [
            ("ACTIONS_ID_TOKEN_REQUEST_URL", self.url.clone()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", BEARER.to_string()),
        ]
    }

    /// Answers the next `n` requests with HTTP `status` (0: none).
    pub fn fail_next(&self, status: u16, n: usize) {
        self.fail_with(&vec![status; n]);
    }

    /// Answers the next requests with these statuses, one each, in order.
    pub fn fail_with(&self, statuses: &[u16]) {
        self.state.lock().unwrap().failing = statuses.iter().copied().collect();
    }

    /// Requests received, and tokens issued.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.requests, st.issued)
    }

    pub fn audiences(&self) -> Vec<String> {
        self.state.lock().unwrap().audiences.clone()
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp
}

fn answer(state: &Mutex<State>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut st = state.lock().unwrap();
    st.requests += 1;
    if let Some(status) = st.failing.pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        // As a broken service might: a token in its error.
        let leaked = jwt(serde_json::json!({"iss": ISSUER, "sub": "leaked"}));
        return json(
            status,
            serde_json::json!({"message": format!("failing on purpose, last token {leaked}")}),
        );
    }
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bearer_ok = auth
        .split_once(' ')
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token == BEARER);
    if !bearer_ok {
        // Echoing what it was sent, as some proxies' and services' errors do.
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": format!("Bad credentials: {auth}")}),
        );
    }
    let audience = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "audience")
            .map(|(_, v)| v.into_owned())
    });
    let Some(audience) = audience else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"message": "audience is required"}),
        );
    };
    st.audiences.push(audience.clone());
    st.issued += 1;
    let now = now();
    let token = jwt(serde_json::json!({
        "iss": ISSUER,
        "sub": format!("repo:credwrap/credwrap:ref:refs/heads/main:token-{}", st.issued),
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + st.lifetime.as_secs(),
    }));
    json(
        StatusCode::OK,
        serde_json::json!({"count": 1, "value": token}),
    )
}
