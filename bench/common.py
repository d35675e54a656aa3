"""Shared helpers for the benchmark modules in bench/ (issue 6: Lectern measured against
its peers in the same run). Python 3.11 standard library only; tools are run with
subprocess.

A benchmark module has `run(quick, lectern_bin, work) -> dict` returning
`{"title", "rows", "notes", "targets"}` (`targets` rows made by `target()`), and ends
with `if __name__ == "__main__": common.main(run, "name")`, which parses `--quick`,
`--bin` (default: the release build, else the debug build), `--work` (default
/var/tmp/lectern-bench/NAME) and prints the dict as JSON. A SIGTERM unwinds like Ctrl-C,
so a module's try/finally stops what it started.

What is here:
  - processes: `Lectern` (a `lectern serve`, or another role, on a free port with its own
    data folder, `LECTERN_RATE_LIMITS=off`, `RUST_LOG=warn`), `proc_stats()` (peak RSS
    from VmHWM, CPU seconds from /proc/PID/stat, ended children included),
    `ChildrenPeak` (the fenced children's peak RSS), `raise_nofile()`, `stop_process()`,
    `free_port()`
  - the API: `Api` (a tiny JSON client; `Api.signup(base, "owner")`), `tus_upload()`,
    `wait_lecture_ready()`, `ready_lecture()` (published course + lecture + tus upload +
    wait until transcoded), `make_video()` / `test_video()` (GStreamer test sources,
    cached in /var/tmp/lectern-bench/media or $LECTERN_BENCH_MEDIA)
  - load: `wrk()` (closed loop; a Lua script reports p50…p99.9 as JSON, optional
    method/headers/body and a list of paths to cycle), `h2load_rate()` (a fixed offered
    rate with h2load; percentiles from its per-request log)
  - tools and notes: `apt_install()` (idempotent, no recommends), `machine_notes()`,
    `ratio()`, `percentile()`
Everything started here is stopped by its own pid only.
"""
import argparse
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

RELEASE_BIN = "/var/tmp/lectern-target/release/lectern"
DEBUG_BIN = "/var/tmp/lectern-target/debug/lectern"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- module plumbing

def default_bin():
    """The release build if it exists, else the debug build."""
    return RELEASE_BIN if Path(RELEASE_BIN).exists() else DEBUG_BIN


def main(run, name, extra=None):
    """The `__main__` of a benchmark module: parse the common flags, run, print JSON.
    `extra(parser)` may add module-specific flags; their values go to run() by keyword."""
    p = argparse.ArgumentParser(description=f"Lectern benchmark: {name}")
    p.add_argument("--quick", action="store_true", help="seconds-long run that only checks the machinery")
    p.add_argument("--bin", default=None, help=f"lectern binary (default {RELEASE_BIN}, else {DEBUG_BIN})")
    p.add_argument("--work", default=None, help=f"work folder (default /var/tmp/lectern-bench/{name})")
    if extra:
        extra(p)
    # A SIGTERM (a harness's timeout) unwinds like Ctrl-C, so every `finally` stops
    # what the module started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = vars(p.parse_args())
    quick, lectern_bin, work = args.pop("quick"), args.pop("bin"), args.pop("work")
    lectern_bin = lectern_bin or default_bin()
    work = work or f"/var/tmp/lectern-bench/{name}"
    result = run(quick, lectern_bin, work, **args)
    print(json.dumps(result, indent=2, ensure_ascii=False))


def target(name, value, limit, met):
    """One row of `targets`: a named measurement, the limit as text, whether it is met."""
    return {"name": name, "value": None if value is None else float(value), "limit": limit, "met": bool(met)}


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def machine_notes():
    """Facts about the machine that bear on every number: cores and the load before we start."""
    load = os.getloadavg()
    return [f"machine: {os.cpu_count()} cores, load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} "
            f"(1/5/15 min) when the run started; other work on the machine skews the numbers"]


# ---------------------------------------------------------------- processes

def services_env(command):
    """The variables `scripts/services.sh COMMAND` prints (`start` installs and starts
    PostgreSQL, RabbitMQ and S3 first; `env` only prints where they listen)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"
    done = subprocess.run([str(script), command], capture_output=True, text=True)
    if done.returncode != 0:
        # Its own words on which service did not come up, not just the exit status.
        raise RuntimeError(f"scripts/services.sh {command} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    out = done.stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value.strip("'\"")
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want=65536):
    """Raise this process's open-file soft limit (children inherit it) toward the hard
    limit; returns the new soft limit. Needed for ~1000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return new
    return soft


def proc_stats(pid):
    """Peak RSS (VmHWM, MiB) and CPU seconds (user+system) of a live process, its
    children that ended included (Lectern's fenced probes and transcodes: the kernel
    adds a child's CPU to its parent's once the parent has waited for it)."""
    out = {"peak_rss_mib": None, "cpu_s": None}
    try:
        out["peak_rss_mib"] = vm_hwm_mib(pid)
        # Fields after the ")" that ends the command name: utime, stime, cutime, cstime
        # are the 12th to 15th.
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        out["cpu_s"] = round(sum(int(f) for f in fields[11:15]) / CLK_TCK, 2)
    except (OSError, ValueError, IndexError):
        pass
    return out


def vm_hwm_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


class ChildrenPeak:
    """The highest peak RSS (MiB) of any child of `pid`, sampled every 100 ms while it
    runs: Lectern runs each probe and pipeline in a fenced child process, whose memory
    is not the parent's. A child's VmHWM only grows, so the last sample before it ends
    misses at most its last 100 ms."""

    def __init__(self, pid):
        import threading
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(0.1):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                    if int(stat[stat.rindex(")") + 2:].split()[1]) == self.pid:
                        self.peak = max(self.peak, vm_hwm_mib(entry.name) or 0.0)
                except (OSError, ValueError, IndexError):
                    continue

    def stop(self):
        self._stop.set()
        self._thread.join(2)


def stop_process(proc, timeout=10):
    """SIGTERM one process we started (by its pid), then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


class Lectern:
    """One `lectern` process (default role `serve`) on a free port with its own data
    folder and rate limits off. Use as a context manager, or call start()/stop().

        with Lectern(bin, work + "/data") as lec:
            Api.signup(lec.url, "owner")
    """

    def __init__(self, lectern_bin, data_dir, role="serve", env=None, port=None):
        self.bin, self.role = str(lectern_bin), role
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "LECTERN_DATA_DIR": str(self.data_dir),
            "LECTERN_LISTEN": f"127.0.0.1:{self.port}",
            "LECTERN_RATE_LIMITS": "off",
            "RUST_LOG": "warn",
        })
        self.env.update(env or {})
        self.proc = None
        self.log_path = self.data_dir / f"{role}-{self.port}.log"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=60):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.bin, self.role], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.children = ChildrenPeak(self.proc.pid)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lectern {self.role} exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"lectern {self.role} not ready after {timeout}s: {self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stats(self):
        """CPU (fenced children included) and peak RSS: the process's own, and the
        largest of its children's (`children_peak_rss_mib`)."""
        if not self.alive():
            return {"peak_rss_mib": None, "cpu_s": None, "children_peak_rss_mib": None}
        return dict(proc_stats(self.proc.pid), children_peak_rss_mib=self.children.peak)

    def log_tail(self, n=3000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc)
        self.children.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- the API

class ApiError(RuntimeError):
    def __init__(self, status, body, what):
        super().__init__(f"{what}: HTTP {status} {body[:500]!r}")
        self.status, self.body = status, body


def http(method, url, body=None, headers=None, timeout=30):
    """One request; returns (status, headers, body bytes) whatever the status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Api:
    """A tiny JSON client for Lectern's API: `api.call("POST", "/api/courses", {...})`
    returns the decoded JSON or raises ApiError on a status >= 400."""

    def __init__(self, base, token=None, user=None):
        self.base, self.token, self.user = base.rstrip("/"), token, user

    def headers(self, extra=None):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        h.update(extra or {})
        return h

    def call(self, method, path, json_body=None, headers=None, expect=None):
        data, h = None, self.headers(headers)
        if json_body is not None:
            data, h["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        status, _, body = http(method, self.base + path, data, h)
        if (expect is not None and status != expect) or (expect is None and status >= 400):
            raise ApiError(status, body.decode(errors="replace"), f"{method} {path}")
        return json.loads(body) if body else None

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, json_body=None):
        return self.call("POST", path, {} if json_body is None else json_body)

    @classmethod
    def signup(cls, base, role="student", email=None, password="bench password 1", name=None):
        """Signs up a new account (`owner` or `student`) and returns a client holding its token."""
        email = email or f"{role}-{os.urandom(6).hex()}@bench.example.org"
        out = cls(base).call("POST", "/api/auth/signup",
                             {"email": email, "password": password, "name": name or f"Bench {role}", "role": role})
        return cls(base, out["token"], out["user"])


def make_video(path, seconds=10, width=1280, height=720, fps=30, audio=True,
               pattern="pinwheel horizontal-speed=4"):
    """An H.264 (+AAC) MP4 made by GStreamer's test sources; reused if it already exists.
    The default pattern moves without noise, so the 720p rung's ~6 s segments come out at
    a few hundred KB, like a screencast lecture (`smpte` with its noise block hits the
    rung's bit-rate cap instead)."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    frames = int(seconds * fps)
    pipe = (f"videotestsrc num-buffers={frames} pattern={pattern} ! "
            f"video/x-raw,width={width},height={height},framerate={fps}/1 ! "
            f"x264enc speed-preset=veryfast bitrate=3000 ! h264parse ! mp4mux name=mux ! filesink location={tmp}")
    if audio:
        # 441 samples per buffer at 44.1 kHz: 100 buffers a second.
        pipe += (f" audiotestsrc num-buffers={int(seconds * 100)} samplesperbuffer=441 wave=sine ! "
                 f"audio/x-raw,rate=44100,channels=2 ! audioconvert ! avenc_aac ! aacparse ! mux.")
    subprocess.run(["gst-launch-1.0", "-q", "-e", *pipe.split()], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    tmp.rename(path)
    return path


MEDIA_DIR = Path(os.environ.get("LECTERN_BENCH_MEDIA", "/var/tmp/lectern-bench/media"))


def test_video(seconds=10, width=1280, height=720):
    """The cached test video shared by the modules (made once, ~20 s on 2 busy cores)."""
    return make_video(MEDIA_DIR / f"pinwheel_{width}x{height}_{seconds}s.mp4", seconds, width, height)


def tus_upload(api, lecture_id, file_path, chunk_bytes=64 << 20):
    """Uploads a file for a lecture with tus 1.0: creation, then PATCHes of at most
    `chunk_bytes` (memory stays bounded for large sources). Returns the upload URL."""
    file_path = Path(file_path)
    size = file_path.stat().st_size
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    meta = f"lecture_id {b64(lecture_id)},filename {b64(file_path.name)}"
    status, headers, body = http("POST", api.base + "/api/uploads", b"", api.headers({
        "Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": meta}))
    if status != 201:
        raise ApiError(status, body.decode(errors="replace"), "tus creation")
    location = headers["Location"]
    if location.startswith("/"):
        location = api.base + location
    offset = 0
    with open(file_path, "rb") as f:
        while offset < size:
            chunk = f.read(chunk_bytes)
            status, headers, body = http("PATCH", location, chunk, api.headers({
                "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset)}), timeout=600)
            if status != 204:
                raise ApiError(status, body.decode(errors="replace"), f"tus PATCH at {offset}")
            offset = int(headers.get("Upload-Offset", offset + len(chunk)))
            f.seek(offset)
    return location


def wait_lecture_ready(api, lecture_id, timeout=300):
    """Polls GET /api/lectures/{id} until `ready`; raises on `failed` or timeout."""
    deadline = time.time() + timeout
    lecture = None
    while time.time() < deadline:
        lecture = api.get(f"/api/lectures/{lecture_id}")
        if lecture["status"] == "ready":
            return lecture
        if lecture["status"] == "failed":
            raise RuntimeError(f"lecture failed: {lecture.get('failure_reason')}")
        time.sleep(0.5)
    raise RuntimeError(f"lecture not ready after {timeout}s: {lecture}")


def ready_lecture(owner, video, title="Bench course", timeout=300):
    """As `owner`: a published course with one lecture, `video` uploaded over tus and
    transcoded. Returns (course, lecture, seconds from upload start to ready)."""
    course = owner.post("/api/courses", {"title": title, "published": True})
    lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": "Bench lecture"})
    t0 = time.time()
    tus_upload(owner, lecture["id"], video)
    lecture = wait_lecture_ready(owner, lecture["id"], timeout)
    return course, lecture, round(time.time() - t0, 1)


# ---------------------------------------------------------------- tools

def apt_install(package, command=None):
    """Installs a Debian package (no recommends) unless installed; idempotent. `command`,
    if given, is a program the package provides: found on PATH means nothing to do."""
    if command and shutil.which(command):
        return False
    q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    if "install ok installed" in q.stdout:
        return False
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", package]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=600"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return True


_WRK_LUA = r"""
wrk.method = %(method)s
wrk.body = %(body)s
%(headers)s
%(paths)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"mean_us":%%.1f,"max_us":%%d,"p50_us":%%d,"p90_us":%%d,"p95_us":%%d,' ..
    '"p99_us":%%d,"p999_us":%%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


_WRK_PATHS_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format(nil, paths[i])
end
"""


def _lua_str(s):
    if s is None:
        return "nil"
    if not s.isascii():
        raise ValueError("wrk scripts take ASCII strings only")
    return json.dumps(s)  # an ASCII JSON string is a valid Lua string


def wrk(url, connections, duration_s, threads=2, method="GET", headers=None, body=None,
        paths=None, timeout_s=10, script_dir="/tmp"):
    """Runs wrk (closed loop: each connection sends its next request when the previous
    answer arrives) and returns a dict: rps, p50/p90/p95/p99/p99.9/mean/max in ms,
    requests, errors by kind (`status` counts answers >= 400), MB/s. A Lua script sets
    method, headers and body and prints the numbers as JSON from wrk's done().
    `paths` (optional): request paths on url's host to cycle through instead of url's."""
    apt_install("wrk", "wrk")
    hdr = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in (headers or {}).items())
    cycle = _WRK_PATHS_LUA % ", ".join(_lua_str(p) for p in paths) if paths else ""
    script = Path(script_dir) / f"wrk-{os.getpid()}-{os.urandom(3).hex()}.lua"
    script.write_text(_WRK_LUA % {"method": _lua_str(method), "body": _lua_str(body), "headers": hdr,
                                  "paths": cycle})
    threads = max(1, min(threads, connections))
    try:
        p = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s",
                            f"--timeout={timeout_s}s", "-s", str(script), url],
                           capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    finally:
        script.unlink(missing_ok=True)
    line = next((l for l in p.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-1500:]} {p.stderr[-1500:]}")
    raw = json.loads(line[len("WRKJSON "):])
    secs = raw["duration_us"] / 1e6
    ms = lambda us: round(us / 1000, 3)
    return {
        "rps": round(raw["requests"] / secs, 1),
        "p50_ms": ms(raw["p50_us"]), "p90_ms": ms(raw["p90_us"]), "p95_ms": ms(raw["p95_us"]),
        "p99_ms": ms(raw["p99_us"]), "p999_ms": ms(raw["p999_us"]),
        "mean_ms": ms(raw["mean_us"]), "max_ms": ms(raw["max_us"]),
        "requests": raw["requests"], "seconds": round(secs, 2),
        "mb_per_s": round(raw["bytes"] / secs / 1e6, 1),
        "errors": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
        "connections": connections, "threads": threads,
    }


def http_error_total(result):
    return sum(result["errors"].values())


def percentile(sorted_values, p):
    """The nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def h2load_rate(urls, rate, duration_s, clients=50, method="GET", headers=None, body=None,
                warmup_s=1, work="/tmp", processes=10):
    """Offers a fixed request rate with h2load (nghttp2-client) over HTTP/1.1:
    `clients` connections each sending rate/clients requests a second, cycling through
    `urls` (same origin). A connection has one request in flight, so once latency passes
    clients/rate seconds the offered rate is no longer kept: compare `rps` to `rate`.
    h2load fires all its connections on the same tick, so one h2load would offer bursts
    of `clients` requests at once and time the queue behind each burst; the clients are
    spread over `processes` h2loads started evenly across one tick instead (bursts of
    clients/processes). Percentiles come from h2load's per-request log (latency from
    each request's send)."""
    apt_install("nghttp2-client", "h2load")
    urls = [urls] if isinstance(urls, str) else list(urls)
    tag = f"{os.getpid()}-{os.urandom(3).hex()}"
    processes = max(1, min(processes, clients))
    per_client = max(1, round(rate / clients))
    data = None
    extra = []
    for k, v in (headers or {}).items():
        extra += ["-H", f"{k}: {v}"]
    if body is not None or method == "POST":
        # h2load cannot send an empty file: a POST without a body sends `{}` as JSON.
        data = Path(work) / f"h2load-{tag}.body"
        data.write_bytes(body or b"{}")
        if not body and not any(k.lower() == "content-type" for k in (headers or {})):
            extra += ["-H", "Content-Type: application/json"]
        extra += ["-d", str(data)]
    logs, procs = [], []
    tick_s = 1 / per_client
    try:
        for i in range(processes):
            log = Path(work) / f"h2load-{tag}-{i}.log"
            n = clients // processes + (1 if i < clients % processes else 0)
            cmd = ["h2load", "--h1", "-c", str(n), "-t", "1", "--rps", str(per_client), "-D", str(duration_s),
                   "--warm-up-time", str(warmup_s), "--log-file", str(log)] + extra + urls
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            logs.append(log)
            time.sleep(tick_s / processes)
        outputs = [p.communicate(timeout=duration_s + warmup_s + 60) for p in procs]
        rows = [l.split("\t") for log in logs if log.exists() for l in log.read_text().splitlines()]
    finally:
        for log in logs:
            log.unlink(missing_ok=True)
        if data:
            data.unlink(missing_ok=True)
    failed_runs = [(p.returncode, out[-800:], err[-800:]) for p, (out, err) in zip(procs, outputs) if p.returncode != 0]
    if failed_runs or not rows:
        raise RuntimeError(f"h2load failed: {failed_runs}")
    lat = sorted(int(r[2]) / 1000 for r in rows)
    statuses = {}
    for r in rows:
        statuses[r[1]] = statuses.get(r[1], 0) + 1
    starts = [int(r[0]) for r in rows]
    span = max(duration_s, (max(starts) - min(starts)) / 1e6)
    counts = [re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                        r"(\d+) errored, (\d+) timeout", out) for out, _ in outputs]
    r3 = lambda v: None if v is None else round(v, 3)
    return {
        "offered_rps": per_client * clients, "rps": round(len(rows) / span, 1),
        "p50_ms": r3(percentile(lat, 50)), "p90_ms": r3(percentile(lat, 90)), "p95_ms": r3(percentile(lat, 95)),
        "p99_ms": r3(percentile(lat, 99)), "p999_ms": r3(percentile(lat, 99.9)), "max_ms": r3(lat[-1]),
        "requests": len(rows), "statuses": statuses,
        "non_2xx": sum(n for s, n in statuses.items() if not s.startswith("2")),
        "failed": sum(int(m[5]) + int(m[6]) + int(m[7]) for m in counts) if all(counts) else None,
        "clients": clients,
    }
