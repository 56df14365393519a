//! The image and the container recipes of docs/containers.md, with a real Docker daemon.
//!
//! `scripts/test` starts dockerd (Debian's docker.io, state under .deps/docker, no iptables
//! rules: nothing leaves the machine) and exports DOCKER_HOST; it also builds the release
//! (CREDWRAP_DIST, whose image/ is the FROM-scratch image's context) and a static Rust-SDK
//! child (CREDWRAP_STATIC_CHILD). No registry is reachable: the base image is a root file system
//! made here from Debian's busybox-static and imported.
//!
//! Without a daemon these tests skip with a message, except where CREDWRAP_TESTS_STRICT is set
//! (as root, and in CI): there they fail and say why.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::fake_sts::ROLE_ARN;
use support::{run, Fault, Output, Sandbox};

const GATEWAY: &str = "169.254.170.2";
const NETWORK: &str = "credwrap-test";
const ASSUMED: &str = "arn=arn:aws:sts::123456789012:assumed-role/deploy/";

/// One test at a time: they share the daemon, the network and 169.254.170.2:80 (which the
/// namespaced networks of containers.rs use too).
fn one_at_a_time() -> (support::Exclusive, support::Exclusive) {
    let gateway = support::exclusive(support::GATEWAY_ADDRESS);
    (gateway, support::exclusive(support::DOCKER))
}

fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args).env("DOCKER_BUILDKIT", "0");
    run(&mut cmd)
}

fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.code(),
        Some(0),
        "{what}:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// The images, built once: the credwrap image from the release's context, a base from a local
/// root file system, the SDK child on it, and an application image that copies credwrap in as
/// docs/containers.md says (`COPY --from=`).
struct Images {
    credwrap: &'static str,
    child: &'static str,
    app: &'static str,
}

fn images() -> Option<&'static Images> {
    static BUILT: OnceLock<Result<Images, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if std::env::var_os("DOCKER_HOST").is_none() {
            return Err("no Docker daemon: scripts/test starts one (DOCKER_HOST)".into());
        }
        let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
        if info.code() != Some(0) {
            return Err(format!("dockerd does not answer: {}", info.stderr.trim()));
        }
        let (Some(dist), Some(child)) = (
            std::env::var_os("CREDWRAP_DIST").map(PathBuf::from),
            std::env::var_os("CREDWRAP_STATIC_CHILD").map(PathBuf::from),
        ) else {
            return Err("no release to build the image from (CREDWRAP_DIST)".into());
        };
        Ok(built_images(&dist, &child))
    });
    match built {
        Ok(images) => Some(images),
        Err(why) => support::skip(why),
    }
}

/// The images for this release and child: made by an earlier test process of this run (nextest
/// runs each test in its own), or built now. The application image, built last, carries a label
/// naming what they were built from.
fn built_images(dist: &Path, child: &Path) -> Images {
    let images = Images {
        credwrap: "credwrap-test/credwrap:1",
        child: "credwrap-test/child:1",
        app: "credwrap-test/app:1",
    };
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(dist.join("SHA256SUMS"))
            .unwrap_or_default()
            .hash(&mut h);
        std::fs::read(child).unwrap_or_default().hash(&mut h);
        // What build_images makes of them: changed, the images are made again.
        (APPLETS, APP_PATH).hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"credwrap.test.inputs\"}}",
        images.app,
    ]);
    if label.code() == Some(0) && label.stdout.trim() == key {
        return images;
    }
    build_images(dist, child, images, &key)
}

/// busybox's applets in the base image: `wget` is the compose health check's.
const APPLETS: [&str; 6] = ["sh", "cat", "env", "sleep", "ls", "wget"];
/// The application image's PATH: credwrap where docs/containers.md copies it, then busybox.
const APP_PATH: &str = "/usr/local/bin:/bin";

fn build_images(dist: &Path, child: &Path, images: Images, key: &str) -> Images {
    ok(
        &docker(&[
            "build",
            "-q",
            "-t",
            images.credwrap,
            &dist.join("image").to_string_lossy(),
        ]),
        "the credwrap image",
    );
    // A root file system of busybox alone, imported as the base no registry could give.
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    for dir in ["bin", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tar = work.path().join("rootfs.tar");
    ok(
        &run(Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .arg(".")),
        "the root file system",
    );
    ok(
        &docker(&["import", &tar.to_string_lossy(), "credwrap-test/base:1"]),
        "docker import",
    );
    let context = work.path().join("child");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(child, context.join("sdk_child")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM credwrap-test/base:1\nCOPY sdk_child /sdk_child\nENV PATH=/bin\n",
    )
    .unwrap();
    ok(
        &docker(&[
            "build",
            "-q",
            "-t",
            images.child,
            &context.to_string_lossy(),
        ]),
        "the child image",
    );
    // docs/containers.md's pattern for putting credwrap into an image.
    let app = work.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY --from={} /credwrap /usr/local/bin/credwrap\nENV PATH={APP_PATH}\n\
             ENTRYPOINT [\"/usr/local/bin/credwrap\"]\n",
            images.child, images.credwrap
        ),
    )
    .unwrap();
    ok(
        &docker(&[
            "build",
            "-q",
            "--label",
            &format!("credwrap.test.inputs={key}"),
            "-t",
            images.app,
            &app.to_string_lossy(),
        ]),
        "the application image",
    );
    images
}

#[test]
fn the_image_is_small_and_holds_the_static_binary_and_a_ca_bundle() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let size = docker(&["image", "inspect", "--format", "{{.Size}}", images.credwrap]);
    ok(&size, "inspect");
    let bytes: u64 = size.stdout.trim().parse().unwrap();
    println!("image size: {bytes} bytes");
    assert!(bytes < 10 * 1024 * 1024, "{bytes} bytes");
    let version = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        images.credwrap,
        "--version",
    ]);
    ok(&version, "credwrap --version in its image");
    assert!(version.stdout.contains("static"), "{}", version.stdout);
    let files = docker(&["create", images.credwrap]);
    ok(&files, "create");
    let id = files.stdout.trim().to_string();
    let exported = run(Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t")));
    let _ = docker(&["rm", &id]);
    let listing: Vec<&str> = exported
        .stdout
        .lines()
        .filter(|l| !l.ends_with('/'))
        .collect();
    for want in ["credwrap", "etc/ssl/certs/ca-certificates.crt"] {
        assert!(listing.contains(&want), "{want} not in {listing:?}");
    }
}

/// `COPY --from=` into an image of one's own, then the demo in a container: credwrap assumes
/// against the STS (reached by host name), serves the child, refreshes.
#[test]
fn copied_into_another_image_credwrap_runs_the_demo() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let sb = Sandbox::new();
    sb.sts.set_lifetime(std::time::Duration::from_secs(8));
    let port = sb.sts.url().rsplit(':').next().unwrap().to_string();
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--add-host",
        "sts.credwrap.test:127.0.0.1",
        "-e",
        &format!("AWS_ENDPOINT_URL_STS=http://sts.credwrap.test:{port}"),
        "-e",
        &format!("AWS_ACCESS_KEY_ID={}", support::fake_sts::SOURCE_KEY_ID),
        "-e",
        &format!("AWS_SECRET_ACCESS_KEY={}", support::fake_sts::SOURCE_SECRET),
        "-e",
        "AWS_REGION=us-east-1",
        "-e",
        "AWS_EC2_METADATA_DISABLED=true",
        "-e",
        "SOAK_LIFETIME=8",
        "-e",
        "SOAK_SECONDS=20",
        images.app,
        "-v",
        "--role-arn",
        ROLE_ARN,
        "--",
        "/sdk_child",
    ]);
    ok(&out, "the demo in the application image");
    assert!(out.stdout.contains(ASSUMED), "{}", out.stdout);
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    support::assert_stderr_has(&out, "refreshed role credentials");
}

/// docs/containers.md's Docker network, made for the test and removed after.
struct CredwrapNetwork;

impl CredwrapNetwork {
    fn create() -> CredwrapNetwork {
        let _ = docker(&["network", "rm", NETWORK]);
        ok(
            &docker(&[
                "network",
                "create",
                "--subnet",
                "169.254.170.0/24",
                "--gateway",
                GATEWAY,
                NETWORK,
            ]),
            "docker network create",
        );
        CredwrapNetwork
    }
}

impl Drop for CredwrapNetwork {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", NETWORK]);
    }
}

/// docs/containers.md's first recipe: `docker run --env-file "$CREDWRAP_CONTAINER_ENV_FILE"` on the
/// credwrap network; the container's SDK is the role.
#[test]
fn the_env_file_recipe_gives_a_container_the_role() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let _net = CredwrapNetwork::create();
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let out = run(sb
        .credwrap()
        .env("DOCKER_HOST", std::env::var_os("DOCKER_HOST").unwrap())
        .env("CONTAINER_STS", &sts)
        .args(["--container-host", GATEWAY, "--", "sh", "-c"])
        .arg(format!(
            "docker run --rm --network {NETWORK} --env-file \"$CREDWRAP_CONTAINER_ENV_FILE\" \
             -e AWS_ENDPOINT_URL_STS=\"$CONTAINER_STS\" {} /sdk_child",
            images.child
        )));
    ok(&out, "credwrap -- docker run --env-file");
    assert!(out.stdout.contains(ASSUMED), "{}", out.stdout);
}

/// docs/containers.md's compose project: the service in docker-compose.yml as it always is, and the env
/// file in an override used only under credwrap (docker-compose.credwrap.yml), so that plain
/// `docker-compose config`, `logs` and `down` keep working outside credwrap. (An `env_file`
/// that names the variable directly fails there: "variable is not set", and a default of
/// /dev/null is "not a file" to compose v1.)
fn compose_project(child: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "services:\n  job:\n    image: {child}\n    command: [\"/sdk_child\"]\n    \
             networks: [credwrap]\n    environment:\n      - AWS_ENDPOINT_URL_STS\n\
             networks:\n  credwrap:\n    name: {NETWORK}\n    external: true\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docker-compose.credwrap.yml"),
        "services:\n  job:\n    env_file: ${CREDWRAP_CONTAINER_ENV_FILE}\n",
    )
    .unwrap();
    dir
}

/// `docker-compose` in the project; with `credwrap`, the override that adds the env file.
fn compose(project: &Path, credwrap: bool, args: &[&str]) -> Command {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(project)
        .args(compose_options(credwrap))
        .args(args);
    cmd
}

/// The project name, and with `credwrap` the override that adds the env file.
fn compose_options(credwrap: bool) -> Vec<&'static str> {
    let mut options = vec!["-p", "credwraptest"];
    if credwrap {
        options.extend([
            "-f",
            "docker-compose.yml",
            "-f",
            "docker-compose.credwrap.yml",
        ]);
    }
    options
}

/// `credwrap ... -- docker-compose run --rm job`; and, outside credwrap, the same project's
/// `config` and `down` work without the variable.
#[test]
fn the_compose_recipe_gives_the_service_the_role_and_keeps_compose_usable_outside() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let _net = CredwrapNetwork::create();
    let project = compose_project(images.child);
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let out = run(sb
        .credwrap()
        .current_dir(project.path())
        .env("DOCKER_HOST", std::env::var_os("DOCKER_HOST").unwrap())
        .env("AWS_ENDPOINT_URL_STS", &sts)
        .args(["--container-host", GATEWAY, "--", "docker-compose"])
        .args(compose_options(true))
        .args(["run", "--rm", "job"]));
    ok(&out, "credwrap -- docker-compose run");
    assert!(out.stdout.contains(ASSUMED), "{}", out.stdout);
    for args in [&["config"][..], &["down"]] {
        let outside =
            run(compose(project.path(), false, args).env_remove("CREDWRAP_CONTAINER_ENV_FILE"));
        ok(
            &outside,
            &format!("docker-compose {args:?} outside credwrap"),
        );
    }
}

/// docs/containers.md's `--serve` recipe for `docker-compose up -d`, run by a shell as written:
/// `eval "$(credwrap ... --serve --detach)"`, compose up, and later `kill "$CREDWRAP_PID"`. The
/// detached service gets the role; credwrap stops cleanly and leaves no env file.
#[test]
fn serve_mode_serves_a_detached_compose_service() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let _net = CredwrapNetwork::create();
    let project = compose_project(images.child);
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    let mut shell = Command::new("bash");
    shell.env_clear();
    for (k, v) in sb.credwrap().get_envs() {
        if let Some(v) = v {
            shell.env(k, v);
        }
    }
    // docs/containers.md's recipe, with compose v1's spelling and the project name, and, for the
    // container only, the STS it can reach; it ends with `kill`, which the test does later.
    let recipe = support::doc_recipe("compose-serve");
    let (serve, compose_up) = {
        let mut lines = recipe
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty());
        (
            lines.next().unwrap().to_string(),
            lines.next().unwrap().to_string(),
        )
    };
    assert_eq!(
        recipe.lines().last(),
        Some("kill \"$CREDWRAP_PID\""),
        "{recipe}"
    );
    let compose_up = compose_up.replace(
        "docker compose ",
        "AWS_ENDPOINT_URL_STS=\"$CONTAINER_STS\" docker-compose -p credwraptest ",
    );
    let recipe = format!(
        "set -e\n{serve}\n{compose_up}\n\
         echo \"pid=$CREDWRAP_PID\"\n\
         echo \"env_file=$CREDWRAP_CONTAINER_ENV_FILE\"\n"
    );
    let out = run(shell
        .current_dir(project.path())
        .env("DOCKER_HOST", std::env::var_os("DOCKER_HOST").unwrap())
        .env("PATH", support::path_with_credwrap())
        .env("CONTAINER_STS", &sts)
        .arg("-c")
        .arg(recipe));
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    // Stopped however the test ends.
    let server = Stop(field("pid").and_then(|p| p.parse().ok()));
    ok(
        &out,
        "eval \"$(credwrap --serve --detach)\"; docker-compose up -d",
    );
    let path = field("env_file").expect("CREDWRAP_CONTAINER_ENV_FILE");
    let id = run(&mut compose(
        project.path(),
        false,
        &["ps", "-a", "-q", "job"],
    ));
    let id = id.stdout.trim().to_string();
    ok(&docker(&["wait", &id]), "docker wait");
    let logs = run(&mut compose(
        project.path(),
        false,
        &["logs", "--no-color", "job"],
    ));
    assert!(
        logs.stdout.contains(ASSUMED),
        "{}\n{}",
        logs.stdout,
        logs.stderr
    );
    ok(
        &run(&mut compose(project.path(), false, &["down"])),
        "docker-compose down, outside credwrap",
    );
    let pid = server.0.expect("CREDWRAP_PID");
    ok(
        &run(Command::new("kill").arg(pid.to_string())),
        "kill \"$CREDWRAP_PID\"",
    );
    support::eventually("credwrap to stop", || support::gone(pid).then_some(()));
    assert!(!Path::new(&path).exists(), "the env file outlived credwrap");
}

/// Kills a detached credwrap that a failed test would leave behind.
struct Stop(Option<i32>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2); the pid is the detached credwrap's, gone or not.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// docs/roles.md's compose recipe with two services: each gets the role its override names,
/// from one credwrap, with real Docker.
#[test]
fn the_compose_recipe_gives_each_service_its_own_role() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let _net = CredwrapNetwork::create();
    let dir = tempfile::tempdir().unwrap();
    let service = |name: &str| {
        format!(
            "  {name}:\n    image: {}\n    command: [\"/sdk_child\"]\n    networks: [credwrap]\n    \
             environment:\n      - AWS_ENDPOINT_URL_STS\n",
            images.child
        )
    };
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "services:\n{}{}networks:\n  credwrap:\n    name: {NETWORK}\n    external: true\n",
            service("reader"),
            service("writer")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docker-compose.credwrap.yml"),
        support::doc_recipe("compose-two-roles-override"),
    )
    .unwrap();
    let sb = Sandbox::new();
    let sts = sb.sts.serve_on(GATEWAY.parse().unwrap());
    // The recipe as written, with compose v1's spelling and the project name.
    let line = support::credwrap_line(&support::doc_recipe("compose-two-roles"))
        .replace("docker compose ", "docker-compose -p credwraptest ");
    let mut shell = sb.shell(&line);
    let out = run(shell
        .current_dir(dir.path())
        .env("DOCKER_HOST", std::env::var_os("DOCKER_HOST").unwrap())
        .env("AWS_ENDPOINT_URL_STS", &sts));
    let _ = run(&mut compose(dir.path(), false, &["down"]));
    ok(&out, "credwrap -- docker-compose up");
    let said = |service: &str| {
        out.stdout
            .lines()
            // compose prefixes each line with the container's name, in colour:
            // `ESC[36mreader_1  |ESC[0m arn=...`.
            .filter(|l| l.contains(&format!("{service}_1 ")) && l.contains(" arn="))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (reader, writer) = (said("reader"), said("writer"));
    assert!(
        reader
            .iter()
            .any(|l| l.contains("123456789012:assumed-role/reader/")),
        "{reader:?} {:?}",
        out.stdout
    );
    assert!(
        writer
            .iter()
            .any(|l| l.contains("210987654321:assumed-role/writer/")),
        "{}",
        out.stdout
    );
}

/// `docker inspect`'s health status of container `id`.
fn health_of(id: &str) -> String {
    let out = docker(&["inspect", "--format", "{{.State.Health.Status}}", id]);
    out.stdout.trim().to_string()
}

/// docs/operations.md's compose health check, in the override as written (its interval made
/// 1s): the service is `healthy` while credwrap can serve the role on the gateway, `unhealthy`
/// once STS has failed long enough, and `healthy` again when STS is back.
#[test]
fn the_compose_health_check_follows_what_credwrap_can_serve() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let _net = CredwrapNetwork::create();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "services:\n  job:\n    image: {}\n    command: [\"sleep\", \"300\"]\n    \
             networks: [credwrap]\nnetworks:\n  credwrap:\n    name: {NETWORK}\n    external: true\n",
            images.child
        ),
    )
    .unwrap();
    let recipe = support::doc_recipe("compose-healthcheck");
    assert!(recipe.contains("interval: 30s"), "{recipe}");
    std::fs::write(
        dir.path().join("docker-compose.credwrap.yml"),
        recipe.replace("interval: 30s", "interval: 1s"),
    )
    .unwrap();
    let sb = Sandbox::new();
    sb.sts.set_lifetime(std::time::Duration::from_secs(6));
    let served = run(sb.credwrap().args([
        "--serve",
        "--detach",
        "--container-host",
        GATEWAY,
        "--max-lifetime",
        "10m",
    ]));
    ok(&served, "credwrap --serve --detach");
    let exports = support::exports(&served.stdout);
    let server = Stop(exports.get("CREDWRAP_PID").and_then(|p| p.parse().ok()));
    let up = run(compose(dir.path(), true, &["up", "-d"])
        .env("DOCKER_HOST", std::env::var_os("DOCKER_HOST").unwrap())
        .env(
            "CREDWRAP_CONTAINER_ENV_FILE",
            &exports["CREDWRAP_CONTAINER_ENV_FILE"],
        ));
    let id = run(&mut compose(dir.path(), false, &["ps", "-q", "job"]));
    let id = id.stdout.trim().to_string();
    let down = || run(&mut compose(dir.path(), false, &["down", "-t", "0"]));
    ok(&up, "docker-compose up -d");
    for (fault, want) in [
        (Fault::None, "healthy"),
        (Fault::ServerError, "unhealthy"),
        (Fault::None, "healthy"),
    ] {
        sb.sts.set_fault(fault);
        support::eventually(&format!("the service {want}"), || {
            (health_of(&id) == want).then_some(())
        });
    }
    ok(&down(), "docker-compose down");
    drop(server);
}

/// docs/operations.md's Kubernetes probe, run as the kubelet runs an exec probe: the command in
/// the container where credwrap is PID 1 (the application image's entrypoint). Exit 0 while the
/// role can be served, 1 once STS has failed long enough, 0 again when it is back.
#[test]
fn the_kubernetes_probe_runs_status_where_credwrap_is_pid_1() {
    let _turn = one_at_a_time();
    let Some(images) = images() else { return };
    let recipe = support::doc_recipe("kubernetes-probe");
    let command: Vec<String> = recipe
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: "))
        .map(|list| serde_json::from_str(list).unwrap())
        .unwrap_or_else(|| panic!("no command in {recipe}"));
    let sb = Sandbox::new();
    sb.sts.set_lifetime(std::time::Duration::from_secs(6));
    let port = sb.sts.url().rsplit(':').next().unwrap().to_string();
    let name = "credwrap-test-probe";
    let _ = docker(&["rm", "-f", name]);
    let started = docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        &format!("AWS_ENDPOINT_URL_STS=http://127.0.0.1:{port}"),
        "-e",
        &format!("AWS_ACCESS_KEY_ID={}", support::fake_sts::SOURCE_KEY_ID),
        "-e",
        &format!("AWS_SECRET_ACCESS_KEY={}", support::fake_sts::SOURCE_SECRET),
        "-e",
        "AWS_REGION=us-east-1",
        "-e",
        "AWS_EC2_METADATA_DISABLED=true",
        images.app,
        "--role-arn",
        ROLE_ARN,
        "--",
        "sleep",
        "300",
    ]);
    ok(&started, "docker run the application image");
    let probe = || {
        let mut args = vec!["exec", name];
        args.extend(command.iter().map(String::as_str));
        docker(&args)
    };
    for (fault, want) in [(Fault::None, 0), (Fault::ServerError, 1), (Fault::None, 0)] {
        sb.sts.set_fault(fault);
        support::eventually(&format!("the probe to exit {want}"), || {
            (probe().code() == Some(want)).then_some(())
        });
    }
    let said = probe();
    assert!(
        said.stdout.contains("credwrap 1: healthy"),
        "{}",
        said.stdout
    );
    let _ = docker(&["rm", "-f", name]);
}
