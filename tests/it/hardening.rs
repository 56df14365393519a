//! Only the child gets in, secrets never leak, and processes behave like tini.

use crate::support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use support::endpoint::{send_raw, EndpointChild};
use support::{eventually, python, run, script, Sandbox};

fn get_with_host(ep: &EndpointChild, host: &str) -> u16 {
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        ep.path, ep.token
    );
    send_raw(&ep.addr, raw.as_bytes()).status
}

#[test]
fn host_header_must_name_loopback() {
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &[]);
    let port = ep.addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(get_with_host(&ep, &ep.addr.clone()), 200);
    assert_eq!(get_with_host(&ep, &format!("localhost:{port}")), 200);
    assert_eq!(get_with_host(&ep, "127.0.0.1"), 200);
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1:{}", port.parse::<u16>().unwrap().wrapping_add(1)),
        format!("127.0.0.1.evil.example:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(get_with_host(&ep, &host), 403, "{host}");
    }
    // No Host at all (HTTP/1.0 style).
    let raw = format!(
        "GET {} HTTP/1.0\r\nAuthorization: {}\r\n\r\n",
        ep.path, ep.token
    );
    assert_eq!(send_raw(&ep.addr, raw.as_bytes()).status, 403);
    let _ = ep.finish();
}

/// Requests no SDK sends are refused outright: a credential header twice (which copy a proxy or
/// a server reads differs), or an absolute-form URI naming another host.
#[test]
fn ambiguous_requests_get_400() {
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &[]);
    let port = ep.addr.rsplit(':').next().unwrap().to_string();
    let get = |target: &str, extra: &str| {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n{extra}Connection: close\r\n\r\n",
            ep.addr, ep.token
        );
        send_raw(&ep.addr, raw.as_bytes())
    };
    let twice = get(&ep.path, &format!("Authorization: {}\r\n", ep.token));
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert!(!twice.body.contains("AccessKeyId"));
    let wrong_twice = get(&ep.path, "Authorization: wrong\r\n");
    assert_eq!(wrong_twice.status, 400);
    for authority in ["evil.example", "169.254.169.254", "127.0.0.2"] {
        let r = get(&format!("http://{authority}:{port}{}", ep.path), "");
        assert_eq!(r.status, 400, "{authority}: {}", r.body);
        assert!(!r.body.contains("AccessKeyId"));
    }
    // Absolute-form naming this endpoint is still HTTP, and still served.
    let r = get(&format!("http://127.0.0.1:{port}{}", ep.path), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = ep.finish();
}

#[test]
fn oversized_and_slow_requests_do_not_block_the_child() {
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &[]);
    // Headers beyond 8 KiB or 100 fields are refused.
    let big = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        ep.path,
        ep.addr,
        "a".repeat(16 * 1024)
    );
    let r = send_raw(&ep.addr, big.as_bytes());
    assert!(r.status == 431 || r.status == 0, "{}", r.status);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{many}\r\n",
        ep.path, ep.addr
    );
    let r = send_raw(&ep.addr, raw.as_bytes());
    assert!(r.status == 431 || r.status == 0, "{}", r.status);

    // A slow client that never finishes its headers is cut off.
    let mut slow = TcpStream::connect(&ep.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut slow, &mut buf).unwrap_or(0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "slow client held on"
    );
    let _ = n;

    // An idle keep-alive connection is closed too, so idle clients give their slot back.
    let mut idle = TcpStream::connect(&ep.addr).unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
        ep.path, ep.addr, ep.token
    );
    idle.write_all(req.as_bytes()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read the response, then wait for the server to close the idle connection (EOF).
    while let Ok(n) = std::io::Read::read(&mut idle, &mut chunk) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "idle connection kept open"
    );

    // Hundreds of idle and half-open connections: the child's request is still answered.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&ep.addr).unwrap();
            let _ = s.write_all(b"GET / HT");
            s
        })
        .collect();
    let started = Instant::now();
    assert_eq!(ep.get().0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    let _ = ep.finish();
}

#[test]
fn token_file_mode_keeps_the_token_out_of_the_environment() {
    let sb = Sandbox::new();
    let child = support::start(
        sb.credwrap()
            .args(["--token-file", "--", "sh", "-c"])
            .arg("env | grep -E '^AWS_CONTAINER' ; echo ready; read x; exit 0"),
    );
    let env = child.lines_before("ready");
    assert!(
        !env.iter()
            .any(|l| l.starts_with("AWS_CONTAINER_AUTHORIZATION_TOKEN=")),
        "{env:?}"
    );
    let file = env
        .iter()
        .find_map(|l| l.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="))
        .expect("token file variable")
        .to_string();
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::path::Path::new(&file).parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let token = std::fs::read_to_string(&file).unwrap();
    // Exactly the token: botocore and Go reject a file that ends in a newline.
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token:?}"
    );
    let uri = env
        .iter()
        .find_map(|l| l.strip_prefix("AWS_CONTAINER_CREDENTIALS_FULL_URI=http://"))
        .unwrap();
    let (addr, path) = uri.split_at(uri.find('/').unwrap());
    assert_eq!(
        support::endpoint::request(addr, "GET", path, Some(&token)).0,
        200
    );
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        !std::path::Path::new(&file).exists(),
        "token file left behind"
    );

    // A real SDK reads the file.
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .args(["--token-file", "--"])
        .arg(python())
        .arg(script("whoami.py")));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("method=container-role"),
        "{}",
        out.stdout
    );
}

/// An SDK older than token-file support (botocore 1.20) sends no token: it gets a 401 that names
/// the token file, and credwrap says once, on its side, what is most likely wrong.
#[test]
fn an_sdk_too_old_for_the_token_file_is_told_so() {
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .args(["--token-file", "--"])
        .arg(support::installed(".deps/venv-old/bin/python"))
        .arg(script("whoami.py")));
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
            && out.stderr.contains("401"),
        "the child's error should name the token file: {}",
        out.stderr
    );
    let warnings = out
        .stderr
        .lines()
        .filter(|l| l.contains("came without an Authorization header"))
        .count();
    assert_eq!(warnings, 1, "{}", out.stderr);
    support::assert_stderr_has(&out, "botocore 1.32");
}

/// A full assume, serve and refresh at the highest verbosity: no secret in any output.
#[test]
fn no_secret_reaches_any_output_at_any_verbosity() {
    for format in ["text", "json"] {
        let sb = Sandbox::new();
        sb.sts.set_lifetime(Duration::from_secs(6));
        let token_copy = sb.path("token-copy");
        let child_script = format!(
            "printf %s \"$AWS_CONTAINER_AUTHORIZATION_TOKEN\" > {}; exec \"$PY\" \"$SOAK\"",
            token_copy.display()
        );
        let out = run(sb
            .credwrap()
            .env("RUST_LOG", "trace")
            .env("SOAK_LIFETIME", "6")
            .env("SOAK_KEYS", "3")
            .env("SOAK_SECONDS", "40")
            .env("PY", python())
            .env("SOAK", script("soak.py"))
            .args(["-vvv", "--log-format", format, "--external-id", "ext-id-1"])
            .args(["--", "sh", "-c", &child_script]));
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        assert!(
            out.stderr.contains("refreshed role credentials"),
            "no refresh: {}",
            out.stderr
        );
        let mut secrets = vec![
            support::fake_sts::SOURCE_SECRET.to_string(),
            std::fs::read_to_string(&token_copy).unwrap(),
        ];
        for (_, secret, token) in sb.sts.issued_secrets() {
            secrets.push(secret);
            secrets.push(token);
        }
        assert!(secrets.len() >= 6);
        let all = format!("{}{}", out.stdout, out.stderr);
        for s in &secrets {
            assert!(s.len() >= 16, "{s}");
            assert!(
                !all.contains(s.as_str()),
                "{format}: a secret leaked into the output"
            );
        }
    }
}

#[test]
fn the_child_dies_when_credwrap_is_killed() {
    let sb = Sandbox::new();
    let mut child =
        support::start(
            sb.credwrap()
                .args(["--", "sh", "-c", "echo $$; exec sleep 600"]),
        );
    let pid: i32 = child.line("the child's pid").parse().unwrap();
    child.signal(Signal::SIGKILL);
    let _ = child.wait();
    // The kernel delivers PDEATHSIG at once; the process may linger a moment as a zombie of init.
    eventually("the child to die with credwrap", || {
        support::gone(pid).then_some(())
    });
}

#[test]
fn kill_after_escalates_once_and_only_when_asked() {
    let sb = Sandbox::new();
    let child = support::start(
        sb.credwrap()
            .args(["--kill-after", "1s", "--", "sh", "-c"])
            .arg("trap 'echo ignoring-TERM' TERM; echo ready; while :; do sleep 1 & wait $!; done"),
    );
    child.line_until("ready", |l| l == "ready");
    let started = Instant::now();
    child.signal(Signal::SIGTERM);
    assert_eq!(child.line("the trap"), "ignoring-TERM");
    let out = child.finish();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{:?}", out.status);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    support::assert_stderr_has(&out, "sending SIGKILL");
}

/// A child that dies of a synchronous fault (SEGV, BUS, ABRT; here sent with `kill` from
/// outside) is reported as 128+N to the calling shell, and nothing is forwarded to what the
/// child left in its process group.
#[test]
fn a_child_killed_by_a_fault_signal_is_reported_and_nothing_is_forwarded() {
    let sb = Sandbox::new();
    for (sig, name) in [
        (Signal::SIGSEGV, "SEGV"),
        (Signal::SIGBUS, "BUS"),
        (Signal::SIGABRT, "ABRT"),
    ] {
        // A helper in the child's group that reports any signal it gets; then the child proper.
        let script = "sh -c 'for s in HUP INT QUIT TERM USR1 USR2 ALRM WINCH SEGV BUS ABRT; do \
                          trap \"echo helper-got-$s\" $s; done; echo helper=$$; \
                          while :; do sleep 1 & wait $!; done' & \
                      exec sh -c 'echo child=$$; exec sleep 600'";
        let mut probe = std::process::Command::new("sh");
        probe
            .arg("-c")
            .arg("\"$CREDWRAP\" -- sh -c \"$SCRIPT\"; echo status=$?")
            .envs(sb.credwrap().get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env("CREDWRAP", env!("CARGO_BIN_EXE_credwrap"))
            .env("SCRIPT", script);
        // No controlling terminal, as in CI: the child gets a process group of its own.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut probe, || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = support::start(&mut probe);
        let pids: Vec<String> = (0..2).map(|_| child.line("a pid")).collect();
        let pid = |who: &str| -> i32 {
            pids.iter()
                .find_map(|l| l.strip_prefix(&format!("{who}=")))
                .unwrap_or_else(|| panic!("no {who} pid in {pids:?}"))
                .parse()
                .unwrap()
        };
        kill(Pid::from_raw(pid("child")), sig).unwrap();
        let status = child.line_until("the status", |l| l.starts_with("status="));
        assert_eq!(status, format!("status={}", 128 + sig as i32), "{name}");
        // The helper got nothing: had anything been forwarded, its line would come first.
        kill(Pid::from_raw(pid("helper")), Signal::SIGKILL).unwrap();
        let out = child.finish();
        assert!(!out.stdout.contains("helper-got"), "{name}: {}", out.stdout);
    }
}

#[test]
fn credwrap_exits_with_the_child_even_if_grandchildren_hold_its_stdout() {
    let sb = Sandbox::new();
    let mut child =
        support::start(
            sb.credwrap()
                .args(["--", "sh", "-c", "sleep 60 & echo $$; exit 3"]),
        );
    let group: i32 = child.line("the child's pid").parse().unwrap();
    let started = Instant::now();
    let status = child.wait();
    assert_eq!(status.code(), Some(3));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The sleep still holds the pipe; clean it up (it leads no group of its own: it is in the
    // child's, which credwrap created without a terminal).
    let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
}

#[test]
fn as_a_subreaper_orphans_are_reaped() {
    let sb = Sandbox::new();
    let with = run(sb
        .credwrap()
        .args(["--subreaper", "--"])
        .arg(python())
        .arg(script("orphan.py")));
    assert_eq!(with.code(), Some(0), "{}", with.stderr);
    // credwrap adopted the orphan (without PR_SET_CHILD_SUBREAPER init would have, and reaped
    // it too) and reaped it.
    let field = |name: &str| -> String {
        with.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {}", with.stdout))
            .to_string()
    };
    assert_eq!(field("orphan_parent"), field("credwrap"), "{}", with.stdout);
    assert_eq!(field("zombies"), "0", "{}", with.stdout);
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn junk(&mut self, max: usize) -> String {
        let len = (self.next() % (max as u64 + 1)) as usize;
        (0..len)
            .map(|_| (b'!' + (self.next() % 94) as u8) as char)
            .collect()
    }
}

/// Random methods, paths, headers and bodies: the endpoint never fails to answer, and never
/// hands out a credential unless the request is a GET of the path with the exact token.
#[test]
fn random_requests_never_get_a_credential_without_the_exact_token() {
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &[]);
    let token = ep.token.clone();
    let (path, addr) = (ep.path.clone(), ep.addr.clone());
    let upper_path = path.to_uppercase();
    let path_slash = format!("{path}/");
    let path_query = format!("{path}?role=x");
    let double = format!("/{path}");
    let bearer = format!("Bearer {token}");
    let spaced = format!("{token} ");
    let prefix = token[..token.len() / 2].to_string();
    let upper = token.to_uppercase();
    let longer = format!("{token}0");
    for seed in [1u64, 7, 42, 1234, 99_991] {
        let mut rng = Rng(seed);
        for i in 0..120 {
            let method = rng.pick(&[
                "GET", "GET", "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "get",
                "BREW",
            ]);
            let junk_path = format!("/{}", rng.junk(20).replace(['?', '#', ' '], ""));
            let p = rng.pick(&[
                &path,
                &path,
                &path,
                &upper_path,
                &path_slash,
                &path_query,
                &double,
                "/",
                &junk_path,
            ]);
            let junk_auth = rng.junk(70);
            let auth = rng.pick(&[
                &token, &token, &bearer, &spaced, &prefix, &upper, &longer, "", &junk_auth,
            ]);
            let host = rng.pick(&[
                &addr,
                &addr,
                &addr,
                "localhost",
                "evil.example",
                "127.0.0.1:1",
            ]);
            let mut raw = format!("{method} {p} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
            let with_auth = !rng.next().is_multiple_of(5);
            if with_auth {
                raw.push_str(&format!("Authorization: {auth}\r\n"));
            }
            for _ in 0..rng.next() % 4 {
                let name =
                    rng.pick(&["X-Junk", "Accept", "User-Agent", "X-aws-ec2-metadata-token"]);
                raw.push_str(&format!("{name}: {}\r\n", rng.junk(40)));
            }
            let body = rng.junk(64);
            if rng.next().is_multiple_of(2) {
                raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            } else {
                raw.push_str("\r\n");
            }
            let reply = send_raw(&addr, raw.as_bytes());
            let exact = method == "GET"
                && p.split('?').next() == Some(path.as_str())
                && with_auth
                // HTTP drops whitespace around a field value: that is still the exact token.
                && auth.trim() == token
                && (host == addr || host == "localhost");
            let leaked = reply.body.contains("AccessKeyId");
            assert_eq!(
                reply.status == 200 && leaked,
                exact,
                "seed {seed} #{i}: {method} {p} host={host} auth={with_auth}:{auth:?} -> {}",
                reply.status
            );
            assert!(reply.status != 0 || !exact, "seed {seed} #{i}: no answer");
        }
        // Garbage that is not HTTP at all.
        let junk = rng.junk(200);
        let _ = send_raw(&addr, junk.as_bytes());
    }
    assert_eq!(ep.get().0, 200, "the endpoint stopped answering");
    let out = ep.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// Ctrl-Z at a terminal stops credwrap and the command together; continuing them (what `fg`
/// does) resumes both, and the command still reads the terminal.
#[test]
fn job_control_at_a_terminal_keeps_working() {
    let sb = Sandbox::new();
    let cmd = sb.credwrap();
    let mut py = std::process::Command::new(python());
    py.arg(script("pty_jobctl.py"))
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("CREDWRAP", cmd.get_program())
        .env(
            "CHILD_SCRIPT",
            "echo pid=$$; read line; echo read-$line; exit 0",
        );
    let out = run(&mut py);
    assert!(
        out.stdout.contains("stopped=True"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("resumed=True"), "{}", out.stdout);
    assert!(out.stdout.contains("read-go"), "{}", out.stdout);
}

/// credwrap's memory stays out of core files and out of reach of the user's other processes
/// (non-dumpable: /proc/PID/mem, environ and ptrace are root's), while the child is an ordinary
/// process again with the core limit credwrap was started with.
#[test]
fn credwrap_is_non_dumpable_and_the_child_keeps_its_core_limit() {
    use std::os::unix::fs::MetadataExt;
    const CORE: u64 = 1_000_000;
    let sb = Sandbox::new();
    let mut cmd = sb.credwrap();
    // As an unprivileged user when the tests run as root: /proc shows the difference then.
    let as_nobody = unsafe { libc::geteuid() } == 0;
    if as_nobody {
        // The sandbox's directories are root's own (0700): nobody gets /tmp.
        cmd.env("HOME", "/tmp")
            .env("TMPDIR", "/tmp")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    } else {
        println!("not root: the /proc ownership part of this test is skipped");
    }
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let limit = libc::rlimit {
                rlim_cur: CORE,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if as_nobody && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = support::start(cmd.args(["--", "sh", "-c"]).arg(
        "grep 'Max core file size' /proc/self/limits; echo pid=$$; echo ready; read x; exit 0",
    ));
    let lines = child.lines_before("ready");
    let soft = |limits: &str| -> String {
        limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(soft(&lines[0]), CORE.to_string(), "the child's: {lines:?}");
    let ours = std::fs::read_to_string(format!("/proc/{}/limits", child.pid())).unwrap();
    assert_eq!(soft(&ours), "0", "credwrap's own core limit: {ours}");
    if as_nobody {
        let child_pid = lines[1].strip_prefix("pid=").unwrap();
        let owner = |pid: &str| {
            std::fs::metadata(format!("/proc/{pid}/environ"))
                .unwrap()
                .uid()
        };
        assert_eq!(owner(&child.pid().to_string()), 0, "credwrap is dumpable");
        assert_eq!(owner(child_pid), 65534, "the child lost its dumpable flag");
    }
    let out = child.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}
