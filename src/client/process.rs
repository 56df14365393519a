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
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::ask::{self, AskError, Target};
use crate::sys::secret::Secret;

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
    let token = ask::endpoint_token()?.ok_or(
        "no endpoint token in the environment (AWS_CONTAINER_AUTHORIZATION_TOKEN): this \
         profile is served by credwrap to the processes it runs; run this from one of them",
    )?;
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

/// The role's credential, or what went wrong in one line.
async fn get(target: &Target, token: &Secret) -> Result<Bytes, String> {
    match ask::get(target, Some(token)).await {
        Ok((StatusCode::OK, body)) => Ok(body),
        Ok((status, body)) => Err(ask::said(status, &body)),
        Err(AskError::Gone(e)) => Err(format!(
            "the credwrap that serves this profile is gone ({} refused: {e}); the role's \
             credentials are served only while it runs",
            target.authority
        )),
        Err(e) => Err(e.message()),
    }
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
