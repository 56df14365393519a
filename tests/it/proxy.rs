//! Corporate networks, as the AWS CLI handles them: STS reached only through `HTTPS_PROXY` (or
//! `HTTP_PROXY`), `NO_PROXY` honoured, and TLS interception whose CA comes from `AWS_CA_BUNDLE`
//! or the profile's `ca_bundle`. tests/children/corp_net.py stands in for the network: a proxy
//! that alone resolves `*.corp.test` and a TLS front signed by a CA it makes.

use crate::support;

use std::process::Command;

use support::corp_net::CorpNet;
use support::{python, run, script, Output, Sandbox};

/// credwrap (or the AWS CLI) with the sandbox's keys, pointed at `sts_url`.
fn in_network(sb: &Sandbox, mut cmd: Command, sts_url: &str) -> Command {
    let base = sb.credwrap();
    cmd.env_clear()
        .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("AWS_ENDPOINT_URL_STS", sts_url)
        .env("AWS_DEFAULT_REGION", "us-east-1");
    cmd
}

fn credwrap(sb: &Sandbox, sts_url: &str) -> Command {
    let mut cmd = in_network(sb, Command::new(env!("CARGO_BIN_EXE_credwrap")), sts_url);
    cmd.args(["--role-session-name", "corp", "--"])
        .arg(python())
        .arg(script("whoami.py"));
    cmd
}

fn aws_cli(sb: &Sandbox, sts_url: &str) -> Command {
    let mut cmd = in_network(
        sb,
        Command::new(support::installed(".deps/venv/bin/aws")),
        sts_url,
    );
    cmd.args([
        "sts",
        "get-caller-identity",
        "--query",
        "Arn",
        "--output",
        "text",
    ]);
    cmd
}

fn assert_ran_as_the_role(out: &Output) {
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("arn=arn:aws:sts::123456789012:assumed-role/deploy/corp"),
        "{}",
        out.stdout
    );
}

#[test]
fn sts_behind_an_https_proxy_with_tls_interception() {
    let sb = Sandbox::new();
    let net = CorpNet::start(&sb);
    let sts = "https://sts.corp.test";
    let ca = net.ca.clone();

    // The AWS CLI gets through with the proxy and the CA bundle; so do credwrap and its child
    // (which keeps both variables, while 127.0.0.1 stays out of the proxy).
    let cli = run(aws_cli(&sb, sts)
        .env("HTTPS_PROXY", &net.proxy)
        .env("AWS_CA_BUNDLE", &ca));
    assert_eq!(cli.code(), Some(0), "the AWS CLI: {}", cli.stderr);
    let out = run(credwrap(&sb, sts)
        .env("HTTPS_PROXY", &net.proxy)
        .env("AWS_CA_BUNDLE", &ca));
    assert_ran_as_the_role(&out);
    assert_eq!(sb.sts.count("AssumeRole"), 1);

    // The profile's ca_bundle does the same as AWS_CA_BUNDLE.
    sb.write(
        ".aws/config",
        &format!("[profile corp]\nca_bundle = {}\n", ca.display()),
    );
    let out = run(credwrap(&sb, sts)
        .env("HTTPS_PROXY", &net.proxy)
        .env("AWS_PROFILE", "corp")
        .env("AWS_CA_BUNDLE", ""));
    assert_ran_as_the_role(&out);
    sb.write(".aws/config", "");

    // Without the CA, the interception is refused by both, before credwrap starts anything.
    let cli = run(aws_cli(&sb, sts).env("HTTPS_PROXY", &net.proxy));
    assert_ne!(cli.code(), Some(0), "the AWS CLI trusted an unknown CA");
    let out = run(credwrap(&sb, sts).env("HTTPS_PROXY", &net.proxy));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    assert!(
        out.stderr.contains("UnknownIssuer") || out.stderr.contains("certificate"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("arn="), "{}", out.stdout);

    let requests = net.requests();
    // The CLI, credwrap and the child, twice each with the CA, plus the refused attempts.
    let tunnels = requests
        .lines()
        .filter(|l| *l == "proxied CONNECT sts.corp.test:443")
        .count();
    assert!(tunnels >= 5, "{requests}");
}

#[test]
fn sts_over_plain_http_through_http_proxy_and_no_proxy_honoured() {
    let sb = Sandbox::new();
    let net = CorpNet::start(&sb);
    let out = run(credwrap(&sb, "http://sts.corp.test").env("HTTP_PROXY", &net.proxy));
    assert_ran_as_the_role(&out);

    // A proxy is set, but NO_PROXY names the STS: it is reached directly, by credwrap and by
    // the AWS CLI alike.
    let direct = sb.sts.url();
    let cli = run(aws_cli(&sb, &direct)
        .env("HTTP_PROXY", &net.proxy)
        .env("NO_PROXY", "127.0.0.1"));
    assert_eq!(cli.code(), Some(0), "{}", cli.stderr);
    let out = run(credwrap(&sb, &direct)
        .env("HTTP_PROXY", &net.proxy)
        .env("NO_PROXY", "127.0.0.1"));
    assert_ran_as_the_role(&out);

    let requests = net.requests();
    let proxied: Vec<&str> = requests
        .lines()
        .filter(|l| l.starts_with("proxied"))
        .collect();
    assert!(
        proxied.iter().all(|l| l.contains("sts.corp.test")),
        "only the corp.test STS went through the proxy: {proxied:?}"
    );
    assert!(!proxied.is_empty(), "{requests}");
}
