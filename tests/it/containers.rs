//! Containers started by the command get the role, safely (`--container-host`).
//!
//! No Docker daemon here: a "container" is a network namespace joined by a veth pair to a Linux
//! bridge that carries the gateway address 169.254.170.2/24, as `docker network create --subnet
//! 169.254.170.0/24 --gateway 169.254.170.2` builds it. Every SDK of the matrix runs inside it,
//! given only the env file. A second namespace, on a network of its own that routes to
//! 169.254.170.2 through the host (as another Docker network would), must be turned away. The
//! tests build and remove their own namespaces, need root, and skip with a message without it.

use crate::support;

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::{python, run, rust_child, Sandbox};

const GATEWAY: &str = "169.254.170.2";
const ASSUMED: &str = "arn:aws:sts::123456789012:assumed-role/deploy/containers";

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A bridge with the gateway address, a namespace on it ("in"), and one on a network of its own
/// routed to the gateway through the host ("out"). Removed on drop.
struct Network {
    suffix: String,
}

impl Network {
    /// None (with a message) where namespaces cannot be made: not root, no `ip`.
    fn create() -> Option<Network> {
        Network::build(false)
    }

    /// Docker's default bridge with docs/containers.md's recipe: the bridge's own network
    /// (172.31.77.1/24, containers routed through it) plus 169.254.170.2/32 added to it.
    fn default_bridge() -> Option<Network> {
        Network::build(true)
    }

    fn build(default_bridge: bool) -> Option<Network> {
        if unsafe { libc::geteuid() } != 0 {
            return support::skip("network namespaces need root");
        }
        let suffix = format!("{}", std::process::id() % 100_000);
        let net = Network { suffix };
        let (br, ns_in, ns_out) = (net.bridge(), net.ns("in"), net.ns("out"));
        let (va, vb, oa, ob) = (
            format!("cwa{}", net.suffix),
            format!("cwb{}", net.suffix),
            format!("cwo{}", net.suffix),
            format!("cwp{}", net.suffix),
        );
        let (gateway, container): (&[&str], &[&str]) = if default_bridge {
            (
                &["172.31.77.1/24", "169.254.170.2/32"],
                &["172.31.77.10/24", "via", "172.31.77.1"],
            )
        } else {
            (&["169.254.170.2/24"], &["169.254.170.10/24"])
        };
        let mut steps: Vec<Vec<&str>> = vec![vec!["link", "add", &br, "type", "bridge"]];
        for addr in gateway {
            steps.push(vec!["addr", "add", addr, "dev", &br]);
        }
        steps.extend([
            vec!["link", "set", &br, "up"],
            vec!["netns", "add", &ns_in],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &vb, "netns", &ns_in],
            vec!["link", "set", &va, "master", &br, "up"],
            vec!["-n", &ns_in, "addr", "add", container[0], "dev", &vb],
            vec!["-n", &ns_in, "link", "set", &vb, "up"],
            vec!["-n", &ns_in, "link", "set", "lo", "up"],
        ]);
        if default_bridge {
            steps.push(vec![
                "-n",
                &ns_in,
                "route",
                "add",
                "default",
                "via",
                container[2],
            ]);
        }
        steps.extend([
            vec!["netns", "add", &ns_out],
            vec!["link", "add", &oa, "type", "veth", "peer", "name", &ob],
            vec!["link", "set", &ob, "netns", &ns_out],
            vec!["addr", "add", "10.254.77.1/30", "dev", &oa],
            vec!["link", "set", &oa, "up"],
            vec!["-n", &ns_out, "addr", "add", "10.254.77.2/30", "dev", &ob],
            vec!["-n", &ns_out, "link", "set", &ob, "up"],
            vec!["-n", &ns_out, "link", "set", "lo", "up"],
            vec![
                "-n",
                &ns_out,
                "route",
                "add",
                "169.254.170.0/24",
                "via",
                "10.254.77.1",
            ],
        ]);
        for step in steps {
            if !ip(&step) {
                return support::skip(&format!(
                    "`ip {}` failed: network namespaces unavailable",
                    step.join(" ")
                ));
            }
        }
        Some(net)
    }

    fn bridge(&self) -> String {
        format!("cwbr{}", self.suffix)
    }

    fn ns(&self, which: &str) -> String {
        format!("cw{which}{}", self.suffix)
    }

    /// `program args...` inside namespace `which`, with exactly `env`.
    fn exec(
        &self,
        which: &str,
        env: &HashMap<String, String>,
        program: &str,
        args: &[&str],
    ) -> support::Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(which), "env", "-i"]);
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        run(cmd.arg(program).args(args))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.ns("in")]);
        ip(&["netns", "del", &self.ns("out")]);
        ip(&["link", "del", &self.bridge()]);
        ip(&["link", "del", &format!("cwo{}", self.suffix)]);
    }
}

/// The env file, as `docker run --env-file` reads it.
fn read_env_file(path: &str) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What every SDK child needs besides the env file: where the SDKs are, and the STS.
fn sdk_env(container_env: &HashMap<String, String>, sts: &str) -> HashMap<String, String> {
    let mut env = container_env.clone();
    let node_modules = support::installed(".deps/js/node_modules");
    for (k, v) in [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", "/tmp".into()),
        ("CONTAINER", "1".into()),
        ("AWS_ENDPOINT_URL_STS", sts.into()),
        ("PYTHON", python().display().to_string()),
        (
            "AWS_CLI",
            support::installed(".deps/venv/bin/aws")
                .display()
                .to_string(),
        ),
        ("NODE_MODULES", node_modules.display().to_string()),
        ("RUST_CHILD", rust_child().display().to_string()),
        (
            "GO_CHILD",
            support::installed(".deps/go/whoami").display().to_string(),
        ),
        (
            "PYTHON_OLD",
            support::installed(".deps/venv-old/bin/python")
                .display()
                .to_string(),
        ),
        (
            "AWS_CLI_OLD",
            support::installed(".deps/venv-old/bin/aws")
                .display()
                .to_string(),
        ),
        ("AWS_CLI_V2", "/usr/bin/aws".into()),
        (
            "PYTHON_128",
            support::installed(".deps/venv-boto3-1.28/bin/python")
                .display()
                .to_string(),
        ),
        ("CHILDREN", support::script("").display().to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    env
}

/// boto3, in the container, given only the env file, is the role.
fn assert_boto3_is_the_role(net: &Network, container_env: &HashMap<String, String>, sts: &str) {
    let out = net.exec(
        "in",
        &sdk_env(container_env, sts),
        &python().display().to_string(),
        &[&support::script("whoami.py").display().to_string()],
    );
    assert!(
        out.stdout.contains(&format!("arn={ASSUMED}")),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// Every SDK of the matrix in the container, given only the env file; prints and returns the
/// verdicts (for docs/containers.md's table).
fn matrix_in(
    net: &Network,
    container_env: &HashMap<String, String>,
    sts: &str,
    title: &str,
) -> Vec<(String, String)> {
    let matrix = support::script("sdk_matrix.sh").display().to_string();
    let out = net.exec("in", &sdk_env(container_env, sts), "sh", &[&matrix]);
    let results = matrix_results(&out.stdout);
    println!("--- SDKs in a container, {title} ---");
    for (sdk, verdict) in &results {
        println!("{sdk}: {verdict}");
    }
    results
}

/// Per SDK: "role" when it came back as the role, else its last line.
fn matrix_results(stdout: &str) -> Vec<(String, String)> {
    let mut results: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        let Some((sdk, said)) = line.split_once(": ") else {
            continue;
        };
        let verdict = if said == format!("arn={ASSUMED}") {
            "role".to_string()
        } else {
            said.to_string()
        };
        match results.iter_mut().find(|(s, _)| s == sdk) {
            Some((_, v)) if v != "role" => *v = verdict,
            Some(_) => {}
            None => results.push((sdk.to_string(), verdict)),
        }
    }
    results
}

/// credwrap serving containers while its command waits; the command's environment is printed.
fn start(sb: &Sandbox, extra: &[&str]) -> (support::Running, HashMap<String, String>) {
    let child = support::start(
        sb.credwrap()
            .args([
                "--container-host",
                GATEWAY,
                "--role-session-name",
                "containers",
            ])
            .args(extra)
            .args(["--", "sh", "-c", "env; echo ready; read x; exit 0"]),
    );
    let env: HashMap<String, String> = child
        .lines_before("ready")
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (child, env)
}

#[test]
fn every_sdk_in_a_container_gets_the_role_and_nothing_else_does() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::create() else { return };
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let (child, command_env) = start(&sb, &[]);

    // The command gets the env file's path, and nothing else meant for containers.
    let path = command_env
        .get("CREDWRAP_CONTAINER_ENV_FILE")
        .expect("CREDWRAP_CONTAINER_ENV_FILE")
        .clone();
    assert!(!command_env.contains_key("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let container_env = read_env_file(&path);
    let relative = container_env
        .get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .expect("a relative URI on 169.254.170.2:80")
        .clone();
    assert_eq!(relative.len(), 65, "a 256-bit path: {relative}");
    assert_eq!(container_env["AWS_REGION"], "us-east-1");
    assert_eq!(container_env["AWS_EC2_METADATA_DISABLED"], "true");

    // Inside the container, every SDK of the matrix, given only the env file, is the role.
    let results = matrix_in(
        &net,
        &container_env,
        &sts,
        "relative URI on 169.254.170.2:80",
    );
    assert_eq!(results.len(), 9, "{results:?}");
    assert!(results.iter().all(|(_, v)| v == "role"), "{results:?}");

    // Without the secret path: 404, no credential.
    let curl = |which: &str, url: &str| {
        net.exec(
            which,
            &HashMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]),
            "curl",
            &["-s", "-m", "5", "-w", "\n%{http_code}", url],
        )
    };
    let wrong = curl("in", &format!("http://{GATEWAY}/{}", "0".repeat(64)));
    assert!(
        wrong.stdout.trim_end().ends_with("404") && !wrong.stdout.contains("AccessKeyId"),
        "{}",
        wrong.stdout
    );
    let right = curl("in", &format!("http://{GATEWAY}{relative}"));
    assert!(
        right.stdout.trim_end().ends_with("200") && right.stdout.contains("AccessKeyId"),
        "{}",
        right.stdout
    );

    // From another network routed through the host: turned away, even with the path.
    let outside = curl("out", &format!("http://{GATEWAY}{relative}"));
    assert!(
        !outside.stdout.contains("AccessKeyId"),
        "{}",
        outside.stdout
    );
    assert!(
        !outside.stdout.trim_end().ends_with("200"),
        "{}",
        outside.stdout
    );

    // On the host, nothing of credwrap's listens on a wildcard address.
    assert!(
        wildcard_listeners(child.pid().as_raw()).is_empty(),
        "{:?}",
        wildcard_listeners(child.pid().as_raw())
    );

    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the env file outlived credwrap"
    );
    assert!(TcpStream::connect_timeout(
        &format!("{GATEWAY}:80").parse().unwrap(),
        Duration::from_secs(1)
    )
    .is_err());
}

/// Port 80 taken (another credwrap, or no privilege for it): containers get a full URI and a
/// token instead. Newer SDKs accept that on 169.254.170.2; the matrix is printed for docs/containers.md.
#[test]
fn without_port_80_containers_get_a_full_uri_and_a_token() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::create() else { return };
    let _taken = std::net::TcpListener::bind((GATEWAY, 80)).unwrap();
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let (child, command_env) = start(&sb, &[]);
    let container_env = read_env_file(&command_env["CREDWRAP_CONTAINER_ENV_FILE"]);
    let full = container_env
        .get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .expect("a full URI")
        .clone();
    assert!(full.starts_with(&format!("http://{GATEWAY}:")), "{full}");
    let token = container_env["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
    assert_eq!(token.len(), 64);

    let path_env = HashMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]);
    let no_token = net.exec(
        "in",
        &path_env,
        "curl",
        &["-s", "-m", "5", "-w", "\n%{http_code}", &full],
    );
    assert!(
        no_token.stdout.trim_end().ends_with("401"),
        "{}",
        no_token.stdout
    );

    let results = matrix_in(
        &net,
        &container_env,
        &sts,
        "full URI on 169.254.170.2:PORT + token",
    );
    for sdk in ["boto3", "boto3-1.28", "awscli", "js", "rust"] {
        assert!(
            results.iter().any(|(s, v)| s == sdk && v == "role"),
            "{sdk} should accept a full URI on {GATEWAY}: {results:?}"
        );
    }
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    support::assert_stderr_has(&out, "cannot listen on 169.254.170.2:80");
}

/// `--serve`: no command; the exports (the env file's path among them) on stdout, then stdout
/// closed; containers served until SIGTERM, then status 0 and nothing left.
#[test]
fn serve_mode_serves_containers_until_stopped() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::create() else { return };
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let daemon = support::start(sb.credwrap().args([
        "--serve",
        "--container-host",
        GATEWAY,
        "--role-session-name",
        "containers",
    ]));
    let exports = daemon.exports();
    let path = exports
        .get("CREDWRAP_CONTAINER_ENV_FILE")
        .unwrap_or_else(|| panic!("{exports:?}"))
        .clone();
    assert_eq!(exports["CREDWRAP_PID"], daemon.pid().to_string());
    assert_boto3_is_the_role(&net, &read_env_file(&path), &sts);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let out = daemon.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(!std::path::Path::new(&path).exists());

    // With no child to pass them to, the other signals that would end a process end the
    // server as cleanly: a power-fail notice, docker stop's SIGRTMIN+3 for systemd images, USR1.
    for sig in [
        libc::SIGPWR,
        libc::SIGRTMIN() + 3,
        libc::SIGUSR1,
        libc::SIGHUP,
    ] {
        let daemon = support::start(sb.credwrap().args(["--serve", "--container-host", GATEWAY]));
        let path = daemon.exports()["CREDWRAP_CONTAINER_ENV_FILE"].clone();
        // SAFETY: kill(2) with plain integers.
        assert_eq!(unsafe { libc::kill(daemon.pid().as_raw(), sig) }, 0);
        let out = daemon.finish();
        assert_eq!(
            out.code(),
            Some(0),
            "signal {sig}: {:?} {}",
            out.status,
            out.stderr
        );
        assert!(
            !std::path::Path::new(&path).exists(),
            "signal {sig} left {path}"
        );
    }
}

/// One IMDSv2 fetch of the role's credential from the child's IMDS endpoint (`host:port`).
fn imds_get(addr: &str) -> (u16, String) {
    use support::endpoint::send;
    let token = send(
        addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    );
    assert_eq!(token.status, 200, "{}", token.body);
    let r = send(
        addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/deploy",
        &[("X-aws-ec2-metadata-token", &token.body)],
    );
    (r.status, r.body)
}

/// `--endpoint imds --container-host`: the child's IMDS listener and the containers' listener
/// each render their own document, whichever is asked first, and each keeps its protocol's
/// minimum remaining lifetime (IMDS clients need more).
#[test]
fn imds_for_the_child_and_containers_at_once_get_their_own_documents() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::create() else { return };
    let sb = Sandbox::new();
    // Refresh at 10 s; IMDS stops serving at 17.5 s, containers at 25 s.
    sb.sts.set_lifetime(Duration::from_secs(30));
    let (child, command_env) = start(&sb, &["--endpoint", "imds"]);
    let imds = command_env["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let container_env = read_env_file(&command_env["CREDWRAP_CONTAINER_ENV_FILE"]);
    let url = format!(
        "http://{GATEWAY}{}",
        container_env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    );
    let path_env = HashMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]);
    let container_get = || {
        let out = net.exec(
            "in",
            &path_env,
            "curl",
            &["-s", "-m", "5", "-w", "\n%{http_code}", &url],
        );
        let (body, status) = out.stdout.trim_end().rsplit_once('\n').unwrap_or_default();
        (status.parse::<u16>().unwrap_or(0), body.to_string())
    };
    let key = |body: &str| -> String {
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v["AccessKeyId"].as_str().unwrap().to_string()
    };
    let account =
        |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap()["AccountId"].clone();

    // IMDS asks first, then the containers: each gets its protocol's document.
    let (status, imds_first) = imds_get(&imds);
    assert_eq!(status, 200, "{imds_first}");
    let (status, container_second) = container_get();
    assert_eq!(status, 200, "{container_second}");
    assert_eq!(key(&imds_first), key(&container_second));
    assert!(
        account(&imds_first).is_null(),
        "IMDS has no AccountId: {imds_first}"
    );
    assert_eq!(
        account(&container_second),
        "123456789012",
        "{container_second}"
    );

    // After a refresh, the other way round.
    let first_key = key(&imds_first);
    let container_first = support::eventually("a refreshed credential", || {
        let (status, body) = container_get();
        (status == 200 && key(&body) != first_key).then_some(body)
    });
    let (status, imds_second) = imds_get(&imds);
    assert_eq!(status, 200, "{imds_second}");
    assert_eq!(key(&imds_second), key(&container_first));
    assert!(account(&imds_second).is_null(), "{imds_second}");
    assert_eq!(account(&container_first), "123456789012");

    // STS goes away: IMDS stops serving first, containers still get the credential then.
    sb.sts.set_fault(support::Fault::Refuse);
    support::eventually("IMDS to stop serving", || {
        (imds_get(&imds).0 == 503).then_some(())
    });
    let (status, body) = container_get();
    assert_eq!(
        status, 200,
        "containers need less left than IMDS clients: {body}"
    );
    assert_eq!(key(&body), key(&container_first));
    sb.sts.set_fault(support::Fault::None);
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// docs/containers.md's recipe for Docker's default bridge: the address added to the bridge, containers
/// routed to it through their gateway, served as the bridge's own.
#[test]
fn the_default_bridge_recipe_works() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::default_bridge() else {
        return;
    };
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let (child, command_env) = start(&sb, &[]);
    let container_env = read_env_file(&command_env["CREDWRAP_CONTAINER_ENV_FILE"]);
    assert!(container_env.contains_key("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
    assert_boto3_is_the_role(&net, &container_env, &sts);
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// Addresses the SDKs refuse, wildcards, addresses this host lacks: exit 2, nothing called.
#[test]
fn container_hosts_that_cannot_work_are_refused() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    for (host, says) in [
        ("0.0.0.0", "wildcard"),
        ("::", "wildcard"),
        ("127.0.0.1", "the container itself"),
        ("172.17.0.1", "refuse a plain-HTTP container endpoint"),
        (
            "169.254.170.23",
            "no interface of this host has that address",
        ),
        ("not-an-ip", "--container-host"),
    ] {
        let sb = Sandbox::new();
        let out = run(sb.credwrap().args(["--container-host", host, "--", "true"]));
        assert_eq!(out.code(), Some(2), "{host}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{host}: {}", out.stderr);
        assert_eq!(sb.sts.calls().len(), 0, "{host}");
    }
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .args(["--serve", "--container-host", GATEWAY, "--", "true"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
}

/// credwrap's listening sockets bound to 0.0.0.0 or ::, from /proc.
fn wildcard_listeners(pid: i32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f[1], f[3], f[9]);
            let ip = local.split(':').next().unwrap_or_default();
            if state == "0A" && inodes.iter().any(|i| i == inode) && ip.chars().all(|c| c == '0') {
                found.push(format!("{table} {local}"));
            }
        }
    }
    found
}

/// A second network with docs/containers.md's default-bridge recipe (its own subnet, 169.254.170.2/32
/// added to its bridge, a container routed through it), beside the credwrap network: 169.254.170.2
/// is on both bridges, and containers on both must be served.
struct SecondBridge {
    suffix: String,
}

impl SecondBridge {
    fn create(net: &Network) -> SecondBridge {
        let b = SecondBridge {
            suffix: net.suffix.clone(),
        };
        let (br, ns, va, vb) = (
            format!("cwbq{}", b.suffix),
            format!("cwin2{}", b.suffix),
            format!("cwq{}", b.suffix),
            format!("cwr{}", b.suffix),
        );
        for step in [
            vec!["link", "add", &br, "type", "bridge"],
            vec!["addr", "add", "172.31.78.1/24", "dev", &br],
            vec!["addr", "add", "169.254.170.2/32", "dev", &br],
            vec!["link", "set", &br, "up"],
            vec!["netns", "add", &ns],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &vb, "netns", &ns],
            vec!["link", "set", &va, "master", &br, "up"],
            vec!["-n", &ns, "addr", "add", "172.31.78.10/24", "dev", &vb],
            vec!["-n", &ns, "link", "set", &vb, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &ns, "route", "add", "default", "via", "172.31.78.1"],
        ] {
            assert!(ip(&step), "ip {}", step.join(" "));
        }
        b
    }

    fn curl(&self, url: &str) -> String {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &format!("cwin2{}", self.suffix)])
            .args(["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url]));
        out.stdout
    }
}

impl Drop for SecondBridge {
    fn drop(&mut self) {
        ip(&["netns", "del", &format!("cwin2{}", self.suffix)]);
        ip(&["link", "del", &format!("cwbq{}", self.suffix)]);
    }
}

#[test]
fn containers_on_every_network_that_holds_the_address_are_served() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::create() else { return };
    let second = SecondBridge::create(&net);
    let sb = Sandbox::new();
    let (child, command_env) = start(&sb, &[]);
    let container_env = read_env_file(&command_env["CREDWRAP_CONTAINER_ENV_FILE"]);
    let url = format!(
        "http://{GATEWAY}{}",
        container_env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    );
    let path_env = HashMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]);
    let first = net.exec(
        "in",
        &path_env,
        "curl",
        &["-s", "-m", "5", "-w", "\n%{http_code}", &url],
    );
    assert!(first.stdout.trim_end().ends_with("200"), "{}", first.stdout);
    let other = second.curl(&url);
    assert!(
        other.trim_end().ends_with("200") && other.contains("AccessKeyId"),
        "the second network's container was not served: {other}"
    );
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// Raises CAP_NET_BIND_SERVICE into the calling process's ambient set (root has it permitted),
/// as `capsh --addamb` or a systemd unit's AmbientCapabilities would give it to credwrap.
fn raise_ambient_bind_capability() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_BIND_SERVICE: u32 = 10;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with the kernel's own structures; prctl with integers.
    unsafe {
        if libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        data[0].inheritable |= 1 << CAP_NET_BIND_SERVICE;
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(47, 2, CAP_NET_BIND_SERVICE as libc::c_ulong, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An ambient CAP_NET_BIND_SERVICE given to credwrap (to bind 169.254.170.2:80) is credwrap's:
/// the command does not inherit it. Without --container-host credwrap binds nothing privileged
/// and the command keeps what it was given.
#[test]
fn an_ambient_bind_capability_is_not_passed_to_the_command() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(_net) = Network::create() else {
        return;
    };
    let sb = Sandbox::new();
    let ambient_of_child = |args: &[&str]| -> String {
        let mut cmd = sb.credwrap();
        // SAFETY: raising a capability between fork and exec: syscalls only.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, raise_ambient_bind_capability);
        }
        let out = run(cmd
            .args(args)
            .args(["--", "grep", "CapAmb", "/proc/self/status"]));
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        out.stdout
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        ambient_of_child(&["--container-host", GATEWAY]),
        "0000000000000000"
    );
    assert_eq!(
        ambient_of_child(&[]),
        "0000000000000400",
        "the control lost its capability"
    );
}

/// `--container-role`: the containers of a name get an env file of their own whose secret opens
/// their role and no other; the default env file is still the default role. Port 80 is taken
/// here so that every door has a token to swap (with a relative URI the 256-bit path is the
/// whole secret).
#[test]
fn each_container_role_opens_its_role_and_no_other() {
    let _one = support::exclusive(support::GATEWAY_ADDRESS);
    let Some(net) = Network::create() else { return };
    let _taken = std::net::TcpListener::bind((GATEWAY, 80)).unwrap();
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let writer = "arn:aws:iam::210987654321:role/writer";
    let (child, command_env) = start(
        &sb,
        &[
            "--container-role",
            &format!("writer={writer}"),
            "--container-role",
            &format!("reader={}", support::fake_sts::ROLE_ARN),
        ],
    );
    let dir = std::path::PathBuf::from(&command_env["CREDWRAP_CONTAINER_ENV_DIR"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let default_env = read_env_file(&command_env["CREDWRAP_CONTAINER_ENV_FILE"]);
    let writer_env = read_env_file(dir.join("writer.env").to_str().unwrap());
    let reader_env = read_env_file(dir.join("reader.env").to_str().unwrap());
    let whoami = |env: &HashMap<String, String>| {
        net.exec(
            "in",
            &sdk_env(env, &sts),
            &python().display().to_string(),
            &[&support::script("whoami.py").display().to_string()],
        )
    };
    let writer_arn = "arn=arn:aws:sts::210987654321:assumed-role/writer/containers".to_string();
    for (env, want) in [
        (&writer_env, writer_arn),
        (&default_env, format!("arn={ASSUMED}")),
        (&reader_env, format!("arn={ASSUMED}")),
    ] {
        let out = whoami(env);
        assert!(out.stdout.contains(&want), "{}\n{}", out.stdout, out.stderr);
    }

    // A secret swapped between two containers' files opens nothing; a path of no role is the
    // same 404 as any other.
    const URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    const TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    let path_env = HashMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]);
    // (status, body) of a GET of `uri` with `token`, from inside the container.
    let get = |uri: &str, token: &str| {
        let auth = format!("Authorization: {token}");
        let args = ["-s", "-m", "5", "-H", &auth, "-w", "\n%{http_code}", uri];
        let out = net.exec("in", &path_env, "curl", &args);
        let (body, status) = out.stdout.trim_end().rsplit_once('\n').unwrap_or(("", ""));
        (status.to_string(), body.to_string())
    };
    let status = |uri: &str, token: &str| get(uri, token).0;
    assert_eq!(status(&writer_env[URI], &writer_env[TOKEN]), "200");
    for (uri, token) in [
        (&writer_env[URI], &reader_env[TOKEN]),
        (&writer_env[URI], &default_env[TOKEN]),
        (&default_env[URI], &writer_env[TOKEN]),
        (&reader_env[URI], &writer_env[TOKEN]),
    ] {
        assert_eq!(
            status(uri, token),
            "401",
            "{uri} opened with another's token"
        );
    }
    let (base, _) = writer_env[URI].rsplit_once('/').unwrap();
    let nobody = format!("{base}/{}", "0".repeat(64));
    let (status_of_nobody, body) = get(&nobody, &writer_env[TOKEN]);
    assert_eq!(status_of_nobody, "404", "{body}");
    assert!(
        body.contains("no such resource") && !body.contains("writer"),
        "{}",
        body
    );
    // One broker per role, shared by all its containers: the three whoami runs and the curls
    // made no AssumeRole of their own.
    let writer_assumes = sb
        .sts
        .calls()
        .iter()
        .filter(|c| {
            c.action == "AssumeRole" && c.params.get("RoleArn").map(String::as_str) == Some(writer)
        })
        .count();
    assert_eq!(writer_assumes, 1);
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}
