"""credwrap's benchmarks, side by side with what users would run otherwise. Run by scripts/bench.

Everything talks to 127.0.0.1 only: moto_server is the STS for every contender.
Prints one table (medians, ratios, targets) and the machine it ran on.
"""
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".deps", "venv", "bin")
BENCH_VENV = os.path.join(ROOT, ".deps", "bench-venv", "bin")
RELEASE = os.environ.get("BENCH_RELEASE_DIR", os.path.join(ROOT, "target", "release"))
CREDWRAP = os.path.join(RELEASE, "credwrap")
SDK_CHILD = os.path.join(RELEASE, "examples", "sdk_child")
BARE = os.path.join(RELEASE, "examples", "bare_server")
ROLE = "arn:aws:iam::123456789012:role/bench"
QUICK = os.environ.get("BENCH_QUICK") == "1"
LOAD_SECONDS = 3 if QUICK else 10
IDLE_SECONDS = 5 if QUICK else 60
RUNS = 5 if QUICK else 20

rows = []


def row(metric, credwrap, other, ratio, target, ok):
    rows.append((metric, credwrap, other, ratio, target, "met" if ok else "MISSED"))
    print(f"  {metric}: {credwrap} | {other} | {ratio} | {target}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    sys.exit(f"bench: {what} did not happen within {timeout}s")


def start_moto(log):
    """scripts/moto_sts.py, as the tests and the demo start it; its request log goes to `log`."""
    proc = subprocess.Popen(
        [os.path.join(VENV, "python"), os.path.join(ROOT, "scripts", "moto_sts.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        sys.exit(f"bench: moto did not start: {open(log).read()}")
    return proc, url


def base_env(home, sts_url):
    return {
        "PATH": f"{VENV}:{os.environ['PATH']}",
        "HOME": home,
        "AWS_ACCESS_KEY_ID": "AKIABENCHSOURCE",
        "AWS_SECRET_ACCESS_KEY": "bench-source-secret",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_STS": sts_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
    }


def hyperfine(commands, env):
    out = tempfile.mktemp(suffix=".json")
    subprocess.run(
        ["hyperfine", "--style", "none", "--warmup", "3", "--runs", str(RUNS), "--export-json", out,
         *commands], env=env, check=True, stdout=subprocess.DEVNULL)
    return [r["median"] for r in json.load(open(out))["results"]]


def wrk(url, token, connections):
    threads = min(connections, 2)
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{LOAD_SECONDS}s", "--latency"]
    if token:
        args += ["-H", f"Authorization: {token}"]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"bench: {url} answered {non2xx.group(1)} errors under load:\n{out}")
    return rps, pct(50), pct(99)


def proc_stat(pid):
    """(cpu seconds, peak RSS in KiB) of a process."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
    return cpu, hwm


def credwrap_endpoint(env, home):
    """Starts credwrap with a named role and a child that parks; returns (process, url, token,
    the named role's credential_process line)."""
    info = os.path.join(home, "endpoint")
    child = ("line=$(grep credential_process \"$AWS_CONFIG_FILE\"); "
             "printf '%s %s %s\\n' \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" "
             f"\"$AWS_CONTAINER_AUTHORIZATION_TOKEN\" \"${{line#credential_process = }}\" > {info}.tmp; "
             f"mv {info}.tmp {info}; exec sleep 100000")
    proc = subprocess.Popen([CREDWRAP, "--role-arn", ROLE, "--role", f"named={ROLE}", "--",
                             "sh", "-c", child], env=env)
    line = wait_for(lambda: os.path.exists(info) and open(info).read().strip(), "credwrap start")
    url, token, process = line.split(" ", 2)
    return proc, url, token, process


def main():
    home = tempfile.mkdtemp(prefix="credwrap-bench-")
    for name in ("config", "credentials"):
        open(os.path.join(home, name), "w").close()
    moto, sts_url = start_moto(os.path.join(home, "moto.log"))
    procs = [moto]
    try:
        env = base_env(home, sts_url)
        print(f"bench: STS is moto_server at {sts_url}", file=sys.stderr)

        # 1. Start-up: credwrap vs. aws sts assume-role + exports.
        replaced = (
            f"creds=$(aws sts assume-role --role-arn {ROLE} --role-session-name bench "
            "--query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text) && "
            "set -- $creds && export AWS_ACCESS_KEY_ID=$1 AWS_SECRET_ACCESS_KEY=$2 "
            "AWS_SESSION_TOKEN=$3 && true")
        ours, theirs = hyperfine([f"{CREDWRAP} --role-arn {ROLE} -- true", replaced], env)
        ratio = theirs / ours
        row("start-up, `-- true` (median)", f"{ours * 1e3:.1f} ms",
            f"{theirs * 1e3:.0f} ms (aws sts assume-role + exports)", f"{ratio:.1f}x faster",
            ">= 10x faster", ratio >= 10)

        # 1b. The static release binary against the dynamic build: no slower to start.
        static = os.environ.get("BENCH_STATIC")
        if static:
            st, dyn = hyperfine([f"{static} --role-arn {ROLE} -- true",
                                 f"{CREDWRAP} --role-arn {ROLE} -- true"], env)
            row("start-up, static release binary", f"{st * 1e3:.1f} ms",
                f"{dyn * 1e3:.1f} ms (dynamic build)", f"{dyn / st:.2f}x", "not slower",
                st <= dyn * 1.1)

        # 2. Endpoint throughput and latency: credwrap, aws-export-credentials, bare hyper.
        cw, url, token, process = credwrap_endpoint(env, home)
        procs.append(cw)
        body = subprocess.run(["curl", "-sf", "-H", f"Authorization: {token}", url],
                              capture_output=True, text=True, check=True).stdout
        bare = subprocess.Popen([BARE, body], stdout=subprocess.PIPE, text=True)
        procs.append(bare)
        bare_url = f"http://127.0.0.1:{bare.stdout.readline().strip().split('=')[1]}/"

        with open(os.path.join(home, "config"), "w") as f:
            f.write(f"[profile bench]\nrole_arn = {ROLE}\nsource_profile = src\nregion = us-east-1\n"
                    "[profile src]\nregion = us-east-1\n")
        with open(os.path.join(home, "credentials"), "w") as f:
            f.write("[src]\naws_access_key_id = AKIABENCHSOURCE\naws_secret_access_key = x\n")
        peer_port = free_port()
        peer_env = dict(env, PATH=f"{BENCH_VENV}:{env['PATH']}")
        peer = subprocess.Popen(
            [os.path.join(BENCH_VENV, "aws-export-credentials"), "--profile", "bench",
             "--container", f"127.0.0.1:{peer_port}", "peer-token"],
            env=peer_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(peer)
        peer_url = f"http://127.0.0.1:{peer_port}/"

        def peer_up():
            r = subprocess.run(["curl", "-sf", "-H", "Authorization: peer-token", peer_url],
                               capture_output=True)
            return r.returncode == 0
        wait_for(peer_up, "aws-export-credentials start", timeout=60)

        for conns in (1, 16):
            rps, p50, p99 = wrk(url, token, conns)
            peer_rps, peer_p50, peer_p99 = wrk(peer_url, "peer-token", conns)
            bare_rps, bare_p50, bare_p99 = wrk(bare_url, None, conns)
            row(f"endpoint req/s, {conns} conn", f"{rps:,.0f}",
                f"{peer_rps:,.0f} (aws-export-credentials)", f"{rps / peer_rps:.0f}x",
                ">= 20x the Python peer", rps >= 20 * peer_rps)
            row(f"endpoint req/s vs bare hyper, {conns} conn", f"{rps:,.0f}",
                f"{bare_rps:,.0f} (bare hyper)", f"{rps / bare_rps:.0%}", ">= 80% of bare",
                rps >= 0.8 * bare_rps)
            row(f"endpoint p50 / p99, {conns} conn", f"{p50:.3f} / {p99:.3f} ms",
                f"peer {peer_p50:.2f} / {peer_p99:.2f} ms; bare {bare_p50:.3f} / {bare_p99:.3f} ms",
                "", "p99 <= 1 ms at 16 conn" if conns == 16 else "",
                conns != 16 or p99 <= 1.0)

        # 2b. A named role: its door on the same listener, and the credential_process client an
        # SDK runs at each refresh (process start included), against what a per-profile
        # credential_process that assumes the role itself (aws-vault, granted) costs per call.
        named_url = process.split()[-1]
        named_rps, _, named_p99 = wrk(named_url, token, 16)
        row("named role req/s, 16 conn", f"{named_rps:,.0f}", f"{rps:,.0f} (default role)",
            f"{named_rps / rps:.0%}", ">= 80% of the default role's", named_rps >= 0.8 * rps)
        client_env = dict(env, AWS_CONTAINER_AUTHORIZATION_TOKEN=token)
        per_call = (f"aws sts assume-role --role-arn {ROLE} --role-session-name bench "
                    "--output json > /dev/null")
        ours, theirs = hyperfine([f"{process} > /dev/null", per_call], client_env)
        row("credential_process client, per call", f"{ours * 1e3:.1f} ms",
            f"{theirs * 1e3:.0f} ms (an AssumeRole per call)", f"{theirs / ours:.0f}x faster",
            "<= 10 ms", ours <= 0.010)

        # 2c. /healthz beside a credential request on the same listener: no secret, a small
        # JSON body made per request (the credential's is rendered once per refresh).
        health_url = url.split("/", 3)
        health_url = "/".join(health_url[:3]) + "/healthz"
        health_rps, _, health_p99 = wrk(health_url, None, 16)
        row("/healthz req/s, 16 conn", f"{health_rps:,.0f}", f"{rps:,.0f} (credential)",
            f"{health_rps / rps:.0%}", ">= 50% of a credential request's",
            health_rps >= 0.5 * rps)
        row("/healthz p99, 16 conn", f"{health_p99:.3f} ms", "", "", "<= 1 ms",
            health_p99 <= 1.0)

        # 3. Memory under load and CPU while idle.
        _, hwm = proc_stat(cw.pid)
        row("peak RSS after load", f"{hwm / 1024:.1f} MiB", "", "", "<= 10 MiB", hwm <= 10 * 1024)
        cpu0, _ = proc_stat(cw.pid)
        time.sleep(IDLE_SECONDS)
        cpu1, _ = proc_stat(cw.pid)
        idle_ms = (cpu1 - cpu0) * 1e3
        row(f"CPU over {IDLE_SECONDS} s idle", f"{idle_ms:.0f} ms", "", "", "~0 (no polling)",
            idle_ms <= 20)
        cw.terminate()

        # 4. 100 children fetching credentials at once: STS calls and time.
        moto_log = os.path.join(home, "moto.log")
        before = open(moto_log).read().count('"POST / HTTP/1.1" 200')
        fanout = (f"start=$(date +%s%N); i=0; while [ $i -lt 100 ]; do CHILD_MODE=credentials "
                  f"{SDK_CHILD} > /dev/null & i=$((i+1)); done; fail=0; for j in $(jobs -p); do "
                  "wait $j || fail=1; done; echo $(( ($(date +%s%N) - start) / 1000000 )); exit $fail")
        out = subprocess.run([CREDWRAP, "--role-arn", ROLE, "--", "sh", "-c", fanout], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bench: the 100 children failed:\n{out.stderr}")
        elapsed_ms = int(out.stdout.strip().splitlines()[-1])
        assumes = open(moto_log).read().count('"POST / HTTP/1.1" 200') - before
        row("100 SDK children at once", f"{elapsed_ms} ms until all had credentials",
            f"{assumes} AssumeRole call(s) at the STS", "", "exactly 1 AssumeRole", assumes == 1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(home, ignore_errors=True)

    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024 // 1024
    print(f"\nMachine: {os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} "
          f"{platform.release()}; {time.strftime('%Y-%m-%d')}")
    print("| metric | credwrap | compared with | ratio | target | |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
