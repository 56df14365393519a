//! Asking a running credwrap over its loopback listener: what `credwrap --credential-process`
//! and `credwrap status` share. Only `http://127.0.0.1:PORT/PATH` is ever asked, with the
//! secret the asking process was handed.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::sys::secret::Secret;

/// credwrap's answers are a few kilobytes at most; a larger one is not credwrap's.
const MAX_BODY: usize = 64 * 1024;

/// Where credwrap serves: `http://127.0.0.1:PORT/PATH`, and nothing else.
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(uri: &str) -> Result<Target, String> {
        let bad = || format!("{uri:?} is not a credwrap endpoint (http://127.0.0.1:PORT/PATH)");
        let rest = uri.strip_prefix("http://127.0.0.1:").ok_or_else(bad)?;
        let (port, path) = rest.split_once('/').ok_or_else(bad)?;
        port.parse::<u16>().map_err(|_| bad())?;
        Ok(Target {
            authority: format!("127.0.0.1:{port}"),
            path: format!("/{path}"),
        })
    }

    /// The same listener, another path.
    pub fn with_path(&self, path: &str) -> Target {
        Target {
            authority: self.authority.clone(),
            path: path.to_string(),
        }
    }
}

/// The endpoint's secret as credwrap handed it to this process tree: the container token's
/// file or variable, or, where the listener speaks IMDS, the named roles' own variable. `None`
/// when there is none.
pub fn endpoint_token() -> Result<Option<Secret>, String> {
    if let Some(path) = std::env::var_os("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE ({}): {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        return Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))));
    }
    for name in [
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        crate::endpoint::named::ENV_ROLES_TOKEN,
    ] {
        if let Some(token) = std::env::var_os(name).and_then(|t| t.into_string().ok()) {
            return Ok(Some(Secret::new(token)));
        }
    }
    Ok(None)
}

/// Why asking failed: credwrap is not there, or it answered something else.
pub enum AskError {
    /// Nothing listens: that credwrap is gone. The connection's error.
    Gone(std::io::Error),
    Failed(String),
}

impl AskError {
    pub fn message(self) -> String {
        match self {
            AskError::Gone(e) => e.to_string(),
            AskError::Failed(m) => m,
        }
    }
}

/// One GET on a fresh connection, with `token` as `Authorization`; the status and body.
pub async fn get(target: &Target, token: Option<&Secret>) -> Result<(StatusCode, Bytes), AskError> {
    let stream = tokio::net::TcpStream::connect(&target.authority)
        .await
        .map_err(AskError::Gone)?;
    let failed = |what: String| AskError::Failed(what);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            failed(format!(
                "could not talk to credwrap at {}: {e}",
                target.authority
            ))
        })?;
    tokio::spawn(conn);
    let mut req = Request::get(&target.path).header(HOST, &target.authority);
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, token.expose());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed(format!("could not build the request: {e}")))?;
    let resp = sender.send_request(req).await.map_err(|e| {
        failed(format!(
            "credwrap at {} did not answer: {e}",
            target.authority
        ))
    })?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| failed(format!("could not read credwrap's answer: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// credwrap's error bodies are `{"code","message"}` and never carry a secret: in one line.
pub fn said(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!(
            "credwrap answered {}: {}: {}",
            status.as_u16(),
            e.code,
            e.message
        ),
        Err(_) => format!("credwrap answered {}", status.as_u16()),
    }
}
