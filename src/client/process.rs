//! `credwrap --credential-process URI`: what a client's SDK runs for a named role's profile.
//!
//! It reads that role's current credential from the running credwrap over the loopback
//! listener, with the endpoint's secret from its own environment (the SDK runs it with the
//! SDK process's environment), and prints it as `credential_process` JSON, `Version: 1` with
//! `Expiration`, so that every SDK refreshes it by itself. It runs at every SDK refresh, so it
//! does nothing else: no settings, no logging, no signal handling. When the credwrap that wrote
//! the profile is gone it says so in one line and exits 1.

use std::ffi::OsString;
use std::io::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::sys::secret::Secret;

/// The answer is a few hundred bytes; a larger one is not credwrap's.
const MAX_BODY: usize = 64 * 1024;

/// With `--credential-process` as the first argument, runs the client and exits; otherwise
/// returns at once. It runs at every refresh of a client's SDK, so it comes before clap.
pub fn run_if_asked() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(super::aws_files::CREDENTIAL_PROCESS_FLAG.as_ref()) {
        run(args);
    }
}

/// Runs the client with the arguments after the flag; never returns.
fn run(args: impl Iterator<Item = OsString>) -> ! {
    match fetch_and_print(args) {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            eprintln!("credwrap: {message}");
            std::process::exit(1)
        }
    }
}

fn fetch_and_print(mut args: impl Iterator<Item = OsString>) -> Result<(), String> {
    let uri = args
        .next()
        .and_then(|a| a.into_string().ok())
        .ok_or("--credential-process needs the URI credwrap wrote into the AWS config")?;
    if args.next().is_some() {
        return Err("--credential-process takes one URI and nothing else".into());
    }
    let target = Target::parse(&uri)?;
    let token = token()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("could not start: {e}"))?;
    let body = runtime.block_on(get(&target, &token))?;
    let out = translate(&body)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.expose().as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("could not write the credential: {e}"))
}

/// Where the role is served: `http://127.0.0.1:PORT/PATH`, and nothing else.
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(uri: &str) -> Result<Target, String> {
        let bad = || format!("{uri:?} is not a credwrap endpoint (http://127.0.0.1:PORT/PATH)");
        let rest = uri.strip_prefix("http://127.0.0.1:").ok_or_else(bad)?;
        let (port, path) = rest.split_once('/').ok_or_else(bad)?;
        port.parse::<u16>().map_err(|_| bad())?;
        Ok(Target {
            authority: format!("127.0.0.1:{port}"),
            path: format!("/{path}"),
        })
    }
}

/// The endpoint's secret as credwrap handed it to this process tree: the container token's
/// file or variable, or, where the listener speaks IMDS, the named roles' own variable.
fn token() -> Result<Secret, String> {
    if let Some(path) = std::env::var_os("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE ({}): {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        return Ok(Secret::new(text.trim_end_matches(['\r', '\n'])));
    }
    for name in [
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        crate::endpoint::named::ENV_ROLES_TOKEN,
    ] {
        if let Some(token) = std::env::var_os(name).and_then(|t| t.into_string().ok()) {
            return Ok(Secret::new(token));
        }
    }
    Err(
        "no endpoint token in the environment (AWS_CONTAINER_AUTHORIZATION_TOKEN): this \
         profile is served by credwrap to the processes it runs; run this from one of them"
            .into(),
    )
}

/// One GET on a fresh connection; the body of a 200, or what went wrong in one line.
async fn get(target: &Target, token: &Secret) -> Result<Bytes, String> {
    let gone = |e: std::io::Error| {
        format!(
            "the credwrap that serves this profile is gone ({} refused: {e}); the role's \
             credentials are served only while it runs",
            target.authority
        )
    };
    let stream = tokio::net::TcpStream::connect(&target.authority)
        .await
        .map_err(gone)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("could not talk to credwrap at {}: {e}", target.authority))?;
    tokio::spawn(conn);
    let req = Request::get(&target.path)
        .header(HOST, &target.authority)
        .header(AUTHORIZATION, token.expose())
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("could not build the request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("credwrap at {} did not answer: {e}", target.authority))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("could not read credwrap's answer: {e}"))?
        .to_bytes();
    if status == StatusCode::OK {
        return Ok(body);
    }
    // credwrap's error bodies are `{"code","message"}` and never carry a secret.
    let said: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    Err(match said {
        Some(e) => format!(
            "credwrap answered {}: {}: {}",
            status.as_u16(),
            e.code,
            e.message
        ),
        None => format!("credwrap answered {}", status.as_u16()),
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// The container protocol's document, as credwrap serves it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Container {
    access_key_id: String,
    secret_access_key: Secret,
    token: Secret,
    expiration: String,
}

/// What `credential_process` prints.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Process<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    /// Left out when there is none (a profile's own long-lived-key session has none).
    #[serde(skip_serializing_if = "str::is_empty")]
    session_token: &'a str,
    expiration: &'a str,
}

/// The container document as `credential_process` JSON.
fn translate(body: &[u8]) -> Result<Secret, String> {
    let c: Container = serde_json::from_slice(body)
        .map_err(|_| "credwrap's answer is not a credential document".to_string())?;
    let out = Process {
        version: 1,
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        session_token: c.token.expose(),
        expiration: &c.expiration,
    };
    serde_json::to_string(&out)
        .map(Secret::new)
        .map_err(|e| format!("could not write the credential: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_document_becomes_a_credential_process_one() {
        let body = br#"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2026-01-01T00:00:00Z","AccountId":"123456789012"}"#;
        let out = translate(body).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.expose()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Version": 1, "AccessKeyId": "ASIA1", "SecretAccessKey": "s",
                "SessionToken": "t", "Expiration": "2026-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn only_a_loopback_endpoint_is_asked() {
        assert!(Target::parse("http://127.0.0.1:8080/abc").is_ok());
        for bad in [
            "http://10.0.0.1:80/abc",
            "https://127.0.0.1:80/abc",
            "http://127.0.0.1/abc",
            "http://127.0.0.1:99999/abc",
            "http://127.0.0.1:80",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
