//! A Rust-SDK child for credwrap's tests: resolves credentials through aws-config's default
//! chain, unchanged but for the identity cache's buffer, which is scaled to the test
//! credentials' lifetime as botocore's windows are (10 s of an hour).
//!
//! Prints `arn=<Arn>` after its first call, then calls STS GetCallerIdentity until
//! SOAK_SECONDS have passed, and ends with `calls=N errors=N`; exits 1 if any call failed.
//! With CHILD_MODE=credentials it only resolves credentials through the chain (no STS call),
//! prints `key=<AccessKeyId prefix>` and exits: what the benchmark's 100 children do.

use std::time::{Duration, Instant};

use aws_config::identity::IdentityCache;
use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let lifetime = env_f64("SOAK_LIFETIME", 3600.0);
    let seconds = env_f64("SOAK_SECONDS", 0.0);
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .identity_cache(
            IdentityCache::lazy()
                .buffer_time(Duration::from_secs_f64(lifetime * 10.0 / 3600.0))
                .build(),
        )
        .load()
        .await;
    if std::env::var("CHILD_MODE").as_deref() == Ok("credentials") {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = config.credentials_provider();
        let Some(provider) = provider else {
            eprintln!("error: no credential provider");
            std::process::exit(1);
        };
        match provider.provide_credentials().await {
            Ok(c) => println!(
                "key={}",
                &c.access_key_id()[..8.min(c.access_key_id().len())]
            ),
            Err(e) => {
                eprintln!("error: {}", aws_sdk_sts::error::DisplayErrorContext(&e));
                std::process::exit(1);
            }
        }
        return;
    }
    let sts = aws_sdk_sts::Client::new(&config);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut calls, mut errors) = (0u32, 0u32);
    loop {
        calls += 1;
        match sts.get_caller_identity().send().await {
            Ok(out) => {
                let arn = out.arn().unwrap_or_default();
                if calls == 1 {
                    println!("arn={arn}");
                }
                if !arn.contains(":assumed-role/") {
                    errors += 1;
                    eprintln!("error: wrong identity {arn}");
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {}", aws_sdk_sts::error::DisplayErrorContext(&e));
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("calls={calls} errors={errors}");
    std::process::exit(i32::from(errors > 0));
}
