//! The endpoint as a client sees it: only the exact token gets a credential, and it lives
//! exactly as long as the child.

use crate::support;

use std::net::TcpStream;

use support::endpoint::request;
use support::Sandbox;

#[test]
fn only_the_exact_token_gets_a_credential_while_the_child_runs() {
    let sb = Sandbox::new();
    let run = support::start(sb
        .credwrap()
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$AWS_CONTAINER_CREDENTIALS_FULL_URI $AWS_CONTAINER_AUTHORIZATION_TOKEN\"; read line; exit 0",
        ]));
    let line = run.line("the endpoint variables");
    let (uri, token) = line.split_once(' ').unwrap();
    let rest = uri.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let path = path.to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{uri}");
    assert!(path.len() >= 33, "the path should be unguessable: {path}");
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_graphic()),
        "{token}"
    );

    let (status, body) = request(addr, "GET", &path, Some(token));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let issued = sb.sts.issued_secrets();
    assert_eq!(issued.len(), 1);
    assert_eq!(v["AccessKeyId"], issued[0].0.as_str());
    assert_eq!(v["SecretAccessKey"], issued[0].1.as_str());
    assert_eq!(v["Token"], issued[0].2.as_str());
    assert_eq!(v["AccountId"], "123456789012");
    let exp = v["Expiration"].as_str().unwrap();
    assert!(exp.len() == 20 && exp.ends_with('Z'), "{exp}");

    let bearer = format!("Bearer {token}");
    let longer = format!("{token}x");
    let shorter = &token[..token.len() - 1];
    let lower = token.to_ascii_uppercase();
    for auth in [
        None,
        Some("wrong"),
        Some(bearer.as_str()),
        Some(longer.as_str()),
        Some(shorter),
        Some(lower.as_str()),
    ] {
        let (status, body) = request(addr, "GET", &path, auth);
        assert_eq!(status, 401, "{auth:?}");
        assert!(!body.contains("AccessKeyId"), "{body}");
    }
    let (status, body) = request(addr, "GET", "/", Some(token));
    assert_eq!(status, 404);
    assert!(!body.contains("AccessKeyId"));
    let (status, body) = request(addr, "POST", &path, Some(token));
    assert_eq!(status, 405);
    assert!(!body.contains("AccessKeyId"));

    // The child exits: the endpoint is gone with it.
    let out = run.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        TcpStream::connect(addr).is_err(),
        "endpoint still listening after the child exited"
    );
}

#[test]
fn imds_speaks_v2_only_and_serves_the_role() {
    use support::endpoint::{send, EndpointChild};
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &["--endpoint", "imds"]);
    let addr = ep.addr.as_str();
    assert_eq!(ep.path, "/");
    const CREDS: &str = "/latest/meta-data/iam/security-credentials/";
    const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
    const TOKEN: &str = "X-aws-ec2-metadata-token";

    // A session token needs a PUT with a valid TTL, which is echoed back.
    assert_eq!(send(addr, "PUT", "/latest/api/token", &[]).status, 400);
    assert_eq!(
        send(addr, "PUT", "/latest/api/token", &[(TTL, "0")]).status,
        400
    );
    assert_eq!(
        send(addr, "PUT", "/latest/api/token", &[(TTL, "21601")]).status,
        400
    );
    assert_eq!(
        send(addr, "GET", "/latest/api/token", &[(TTL, "60")]).status,
        405
    );
    let forwarded = [(TTL, "60"), ("X-Forwarded-For", "10.0.0.1")];
    assert_eq!(
        send(addr, "PUT", "/latest/api/token", &forwarded).status,
        403
    );
    let r = send(addr, "PUT", "/latest/api/token", &[(TTL, "300")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header(TTL), Some("300"));
    let token = r.body.clone();
    assert!(token.len() >= 32);

    // IMDSv1 (no token) and wrong tokens get nothing.
    for headers in [vec![], vec![(TOKEN, "wrong")], vec![(TOKEN, &token[1..])]] {
        let r = send(addr, "GET", CREDS, &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        let r = send(addr, "GET", &format!("{CREDS}deploy"), &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(!r.body.contains("AccessKeyId"));
    }

    let with = [(TOKEN, token.as_str())];
    let r = send(addr, "GET", CREDS, &with);
    assert_eq!((r.status, r.body.as_str()), (200, "deploy"));
    let r = send(addr, "GET", &format!("{CREDS}deploy"), &with);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["Code"], "Success");
    assert_eq!(v["Type"], "AWS-HMAC");
    assert_eq!(v["AccessKeyId"], sb.sts.issued_secrets()[0].0.as_str());
    assert!(v["Expiration"].as_str().unwrap().ends_with('Z'));
    assert!(v["LastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        send(addr, "GET", &format!("{CREDS}other"), &with).status,
        404
    );
    let extended = "/latest/meta-data/iam/security-credentials-extended/";
    assert_eq!(send(addr, "GET", extended, &with).status, 404);
    assert_eq!(send(addr, "GET", "/latest/meta-data/", &with).status, 404);
    assert_eq!(send(addr, "POST", CREDS, &with).status, 405);

    let out = ep.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("any local process"),
        "no IMDS warning: {}",
        out.stderr
    );
}

#[test]
fn imds_needs_sessions_of_an_hour() {
    let sb = Sandbox::new();
    let out =
        support::run(
            sb.credwrap()
                .args(["--endpoint", "imds", "--duration", "45m", "--", "true"]),
        );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "--duration");
    assert_eq!(sb.sts.calls().len(), 0);
}

/// What older SDKs and instance tools ask an IMDS for: the endpoint with a trailing slash,
/// `//latest/...` paths (the JS SDK v2 joins two slashes), the IAM info, the region and the
/// identity document, all behind a session token.
#[test]
fn imds_serves_what_older_sdks_and_tools_ask_for() {
    use support::endpoint::{send, EndpointChild};
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &["--endpoint", "imds"]);
    let addr = ep.addr.as_str();
    const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
    const TOKEN: &str = "X-aws-ec2-metadata-token";

    let r = send(addr, "PUT", "//latest/api/token", &[(TTL, "60")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let with = [(TOKEN, r.body.as_str())];
    let r = send(
        addr,
        "GET",
        "//latest/meta-data/iam/security-credentials/",
        &with,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "deploy"));
    let r = send(
        addr,
        "GET",
        "//latest/meta-data/iam/security-credentials/deploy",
        &with,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("AccessKeyId"));

    let r = send(addr, "GET", "/latest/meta-data/iam/info", &with);
    assert_eq!(r.status, 200, "{}", r.body);
    let info: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info["Code"], "Success");
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/deploy"
    );
    assert!(info["LastUpdated"].as_str().unwrap().ends_with('Z'));

    let r = send(
        addr,
        "GET",
        "/latest/dynamic/instance-identity/document",
        &with,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["accountId"], "123456789012");
    assert_eq!(doc["region"], "us-east-1");
    let r = send(addr, "GET", "/latest/meta-data/placement/region", &with);
    assert_eq!((r.status, r.body.as_str()), (200, "us-east-1"));

    // Every one of them needs the session token.
    for path in [
        "/latest/meta-data/iam/info",
        "/latest/dynamic/instance-identity/document",
        "/latest/meta-data/placement/region",
        "//latest/meta-data/iam/security-credentials/deploy",
    ] {
        assert_eq!(send(addr, "GET", path, &[]).status, 401, "{path}");
    }
    let out = ep.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// The IMDS endpoint is handed out with a trailing slash, which botocore <= 1.23 needs.
#[test]
fn the_imds_endpoint_variable_ends_in_a_slash() {
    let sb = Sandbox::new();
    let out = support::run(sb.credwrap().args([
        "--endpoint",
        "imds",
        "--",
        "sh",
        "-c",
        "echo \"$AWS_EC2_METADATA_SERVICE_ENDPOINT\"",
    ]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let endpoint = out.stdout.trim();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with('/'),
        "{endpoint}"
    );
}
