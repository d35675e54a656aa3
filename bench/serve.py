"""Serving benchmark: the same HLS files from three deliveries, in the same run:
  static  nginx serving Lectern's asset folder statically (the peer);
  behind  Lectern behind nginx, configured from deploy/nginx/lectern.conf.template
          (PLAYBACK_DELIVERY=nginx): nginx asks Lectern what a token grants (once per
          token, remembered) and sends the file;
  alone   Lectern answering `/play/{token}/…` itself (PLAYBACK_DELIVERY=proxy: tower-http's
          ServeFile), the embedded world with no proxy in front.

A real lecture is made first (a 10 s 720p test video uploaded over tus and transcoded
by `lectern serve`); the files are checked identical from all three before measuring.
wrk then asks for one top-rung segment and, separately, the top rung's media playlist
at 64, 256 and 1000 connections (quick: 64 only, 2 s). Reported per case and delivery:
requests/s, p50, p99, errors and the servers' CPU time per request; and the ratio of
each Lectern delivery's req/s to static nginx's.

Run: python3 bench/serve.py [--quick] [--bin PATH] [--work DIR]
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CONNECTIONS = [64, 256, 1000]
DURATION_S = 10
TARGET_CONNECTIONS = 256  # the targets: behind >= 0.9x static req/s, p99 < 10 ms, here
TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "lectern.conf.template"
DELIVERIES = ["static", "behind", "alone"]

NGINX_CONF = """\
# Written by bench/serve.py: stock static serving tuned like a CDN origin would be, and
# Lectern's deploy template (included below) under the same http-level settings.
{user}worker_processes {workers};
worker_rlimit_nofile 8192;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; image/jpeg jpg; text/vtt vtt; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location / {{ add_header Cache-Control "public, max-age=3600"; }}
    }}
    include {work}/lectern.conf;
}}
"""


def lectern_site(port, upstream, objects):
    """The deploy template as an operator renders it (envsubst of its five names only);
    the S3 location is unused here (file storage), so it points at a closed port."""
    values = {"LECTERN_LISTEN": f"127.0.0.1:{port} backlog=4096", "LECTERN_UPSTREAM": upstream,
              "LECTERN_OBJECTS": f"{objects}/", "LECTERN_S3": "127.0.0.1:1",
              "LECTERN_CACHE": str(Path(objects).parent / "nginx-grants")}
    return re.sub(r"\$\{(LECTERN_[A-Z0-9]+)\}", lambda m: values[m.group(1)], TEMPLATE.read_text())


class Nginx:
    """One nginx master (daemon off) with our own config, pid file and logs in `work`,
    holding two servers: static files from `root` on `url`, and Lectern's deploy
    template in front of `upstream` on `front_url`. One master, so both get the same
    workers and tuning."""

    def __init__(self, work, root, workers, upstream, objects):
        self.work, self.root, self.workers = Path(work), Path(root), workers
        self.upstream, self.objects = upstream, Path(objects)
        self.port, self.front_port = common.free_port(), common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.front_url = f"http://127.0.0.1:{self.front_port}"
        self.proc = None

    def write_config(self):
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read Lectern's files
        (self.work / "lectern.conf").write_text(lectern_site(self.front_port, self.upstream, self.objects))
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, workers=self.workers, work=self.work,
                                          port=self.port, root=self.root))
        return conf

    def start(self, timeout=15):
        conf = self.write_config()
        log = open(self.work / "nginx-stderr.log", "ab")
        self.proc = subprocess.Popen(["nginx", "-p", str(self.work), "-e", str(self.work / "nginx-error.log"),
                                      "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.work / 'nginx-error.log').read_text()[-2000:]}")
            # Both servers: the static one, and the front through to Lectern.
            if _get(self.url + "/master.m3u8")[0] == 200 and _get(self.front_url + "/readyz")[0] == 200:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not answer")

    def pids(self):
        """The master and its workers (CPU and memory are the sum over them)."""
        if not self.proc or self.proc.poll() is not None:
            return []
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            kids = []
        return [self.proc.pid] + [int(k) for k in kids]

    def stats(self):
        per = [common.proc_stats(p) for p in self.pids()]
        cpu = sum(s["cpu_s"] or 0 for s in per)
        rss = sum(s["peak_rss_mib"] or 0 for s in per)
        return {"cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1)}

    def stop(self):
        # SIGTERM to the master (our child) is nginx's fast shutdown: it stops its workers.
        common.stop_process(self.proc)


def _get(url):
    try:
        return common.http("GET", url, timeout=5)
    except OSError as e:
        return None, None, str(e).encode()


def top_rung(asset_dir):
    """The media playlist of the variant with the most pixels, from the master playlist."""
    lines = (asset_dir / "master.m3u8").read_text().splitlines()
    best = None
    for i, line in enumerate(lines):
        m = re.search(r"RESOLUTION=(\d+)x(\d+)", line) if line.startswith("#EXT-X-STREAM-INF") else None
        if m and i + 1 < len(lines):
            pixels = int(m[1]) * int(m[2])
            if best is None or pixels > best[0]:
                best = (pixels, lines[i + 1].strip(), f"{m[1]}x{m[2]}")
    if best is None:
        raise RuntimeError("no video variant in master.m3u8")
    return best[1], best[2]


def files_to_serve(data):
    """(asset folder, [(kind, path in it)], rung resolution) of the one lecture in `data`:
    the largest segment of the top rung (a full-length one) and that rung's playlist."""
    assets = [p for p in (data / "objects" / "assets").iterdir() if p.is_dir()]
    if len(assets) != 1:
        raise RuntimeError(f"expected one asset folder, found {len(assets)}")
    asset = assets[0]
    playlist, resolution = top_rung(asset)
    rung = playlist.rsplit("/", 1)[0]
    segments = sorted((asset / rung).glob("*.ts"), key=lambda p: p.stat().st_size, reverse=True)
    return asset, [("segment", f"{rung}/{segments[0].name}"), ("playlist", playlist)], resolution


def make_lecture(lectern_bin, data, notes):
    """A transcoded lecture in `data`; returns (owner, lecture). The process that made
    it is stopped: the serving processes start fresh, so their peak RSS and CPU belong
    to serving, not to the transcode."""
    lectern = common.Lectern(lectern_bin, data)
    try:
        lectern.start()
        owner = common.Api.signup(lectern.url, "owner")
        video = common.test_video(10, 1280, 720)
        _, lecture, secs = common.ready_lecture(owner, video, "Serving benchmark")
        notes.append(f"test lecture: {video.name} uploaded and transcoded in {secs} s")
        return owner, lecture
    finally:
        lectern.stop()


def check_same_bytes(bases, files, notes, resolution):
    """Every delivery sends the stored file's bytes, or the comparison means nothing."""
    for kind, path in files:
        got = {name: _get(f"{base}/{path}") for name, base in bases.items()}
        digests = {hashlib.sha256(body).digest() for status, _, body in got.values() if status == 200}
        statuses = {name: status for name, (status, _, _) in got.items()}
        if len(digests) != 1 or set(statuses.values()) != {200}:
            raise RuntimeError(f"{path}: the deliveries do not send the same bytes: {statuses}")
        size = len(got["static"][2])
        notes.append(f"{kind}: {path} ({size:,} bytes, {resolution} rung), identical from all three deliveries")


def check_nginx_sends(lectern, play_path, path):
    """Asked directly, Lectern behind nginx answers an empty redirect: the bytes that
    reach wrk through nginx's front are then nginx's, not proxied from Lectern."""
    status, headers, body = _get(f"{lectern.url}{play_path}/{path}")
    if status != 200 or not headers.get("X-Accel-Redirect") or body:
        raise RuntimeError(f"lectern behind nginx did not redirect {path}: {status} {dict(headers or {})}")


def measure(servers, url, connections, duration):
    """wrk against `url`; the CPU of every process in the delivery's path (nginx and
    Lectern, for the one behind nginx) is counted per request."""
    cpu = lambda: sum(s.stats()["cpu_s"] or 0 for s in servers)
    before = cpu()
    r = common.wrk(url, connections, duration)
    used = cpu() - before
    r["server_cpu_us_per_req"] = round(used * 1e6 / r["requests"], 1) if r["requests"] else None
    return r


def row(kind, size, c, res):
    out = {"file": kind, "bytes": size, "connections": c}
    for name in DELIVERIES:
        r = res[name]
        out.update({f"{name}_rps": r["rps"], f"{name}_p50_ms": r["p50_ms"], f"{name}_p99_ms": r["p99_ms"],
                    f"{name}_cpu_us_per_req": r["server_cpu_us_per_req"],
                    f"{name}_errors": common.http_error_total(r)})
    out["behind_rps_ratio"] = common.ratio(res["behind"]["rps"], res["static"]["rps"])
    out["alone_rps_ratio"] = common.ratio(res["alone"]["rps"], res["static"]["rps"])
    return out


def run_case(deliveries, path, c, i, duration):
    """One file at one connection count, each delivery in turn; the order rotates from
    case to case so a drift in the machine's load does not always hit the same one."""
    order = DELIVERIES[i % 3:] + DELIVERIES[:i % 3]
    res = {}
    for name in order:
        servers, base = deliveries[name]
        res[name] = measure(servers, f"{base}/{path}", c, duration)
        time.sleep(0.5)
    return res


def measure_all(deliveries, asset, files, connections, duration, notes):
    rows = []
    lecterns = [s for servers, _ in deliveries.values() for s in servers if isinstance(s, common.Lectern)]
    for kind, path in files:
        size = (asset / path).stat().st_size
        for i, c in enumerate(connections):
            res = run_case(deliveries, path, c, i, duration)
            rows.append(row(kind, size, c, res))
            notes += [f"{n} errors at {c} connections on the {kind}: {r['errors']}"
                      for n, r in res.items() if common.http_error_total(r)]
            for lec in lecterns:
                if not lec.alive():
                    raise RuntimeError(f"lectern died under load: {lec.log_tail()}")
    return rows


def targets_at(rows, at, notes):
    targets = []
    for kind in dict.fromkeys(r["file"] for r in rows):
        r = next(r for r in rows if r["file"] == kind and r["connections"] == at)
        targets.append(common.target(f"{kind}: behind nginx / static nginx req/s at {at} connections",
                                     r["behind_rps_ratio"], ">= 0.9", (r["behind_rps_ratio"] or 0) >= 0.9))
        for name in ("behind", "alone"):
            targets.append(common.target(f"{kind}: {name} p99 ms at {at} connections", r[f"{name}_p99_ms"],
                                         "< 10", r[f"{name}_p99_ms"] < 10))
        # Little's law for a closed loop: every connection always has one request
        # in flight, so the mean latency is connections / throughput, whoever serves.
        floor = {n: round(at / r[f"{n}_rps"] * 1000, 1) for n in DELIVERIES if r[f"{n}_rps"]}
        notes.append(f"{kind} at {at} connections: with every connection always waiting (closed loop), the mean "
                     f"latency is connections / req/s (Little's law): "
                     + ", ".join(f"{n} {ms} ms" for n, ms in floor.items())
                     + f"; a p99 under 10 ms here would need over {at * 100} req/s")
    errors = sum(r["behind_errors"] + r["alone_errors"] for r in rows)
    targets.append(common.target("lectern errors under load, both deliveries (non-2xx, socket errors, timeouts)",
                                 errors, "== 0", errors == 0))
    return targets


def setup_notes(quick, lectern_bin):
    notes = common.machine_notes()
    notes += [
        f"lectern, nginx and wrk share the machine's {os.cpu_count()} cores: every number includes the "
        "load generator's own CPU use, and the deliveries are measured one after the other, never at once",
        "static: nginx, 1 worker per core, sendfile, access_log off, keep-alive without a request cap; "
        "behind: the same nginx master and settings, with deploy/nginx/lectern.conf.template included as is "
        "(upstream keep-alive 256; Lectern asked once per token, its grant cached by nginx), in front of "
        "`lectern serve` with PLAYBACK_DELIVERY=nginx and "
        "LECTERN_TRUST_FORWARDED=true; alone: `lectern serve` with PLAYBACK_DELIVERY=proxy; "
        "both Lecterns embedded world, RUST_LOG=warn, rate limits off, each on its own copy of the data folder "
        "(one process per folder)",
        "CPU µs a request: the processes in the delivery's path (behind: nginx and Lectern together)",
        "wrk: closed loop (-t2, each connection waits for its answer), keep-alive; latencies exclude "
        "requests that timed out (10 s), which are counted under errors",
        f"lectern binary: {lectern_bin}",
    ]
    if "/debug/" in str(lectern_bin):
        notes.append("DEBUG build: Lectern's numbers are not representative; run with the release build")
    if quick:
        notes.append("QUICK mode: 2 s per case, 64 connections only; it checks the machinery, not the targets")
    return notes


def run(quick, lectern_bin, work):
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    common.raise_nofile()
    common.apt_install("wrk", "wrk")
    if not shutil.which("nginx"):
        common.apt_install("nginx-light", "nginx")
    connections = [64] if quick else CONNECTIONS
    duration = 2 if quick else DURATION_S
    notes = setup_notes(quick, lectern_bin)
    owner, lecture = make_lecture(lectern_bin, work / "data", notes)
    # Two Lecterns on one data folder would share its SQLite database and job queue: the
    # one behind nginx gets a copy (same keys, so one playback token is good for both).
    shutil.copytree(work / "data", work / "data-behind")
    alone = behind = nginx = None
    try:
        # Each is assigned just before it starts: `finally` stops what started.
        alone = common.Lectern(lectern_bin, work / "data", env={"PLAYBACK_DELIVERY": "proxy"})
        alone.start()
        behind = common.Lectern(lectern_bin, work / "data-behind",
                                env={"PLAYBACK_DELIVERY": "nginx", "LECTERN_TRUST_FORWARDED": "true"})
        behind.start()
        asset, files, resolution = files_to_serve(work / "data")
        nginx = Nginx(work, asset, os.cpu_count() or 1, f"127.0.0.1:{behind.port}", work / "data-behind" / "objects")
        nginx.start()
        owner = common.Api(alone.url, owner.token, owner.user)  # the first process is gone
        play_path = owner.post(f"/api/lectures/{lecture['id']}/playback")["url"].rsplit("/", 1)[0]  # /play/<token>
        deliveries = {"static": ([nginx], nginx.url), "behind": ([nginx, behind], nginx.front_url + play_path),
                      "alone": ([alone], alone.url + play_path)}
        check_same_bytes({n: base for n, (_, base) in deliveries.items()}, files, notes, resolution)
        for _, path in files:
            check_nginx_sends(behind, play_path, path)

        rows = measure_all(deliveries, asset, files, connections, duration, notes)
        at = TARGET_CONNECTIONS if TARGET_CONNECTIONS in connections else max(connections)
        targets = targets_at(rows, at, notes)
        if at != TARGET_CONNECTIONS:
            notes.append(f"targets are set at {TARGET_CONNECTIONS} connections; this run measured at {at}")
        a, b, n = alone.stats(), behind.stats(), nginx.stats()
        notes.append(f"peak RSS while serving: lectern alone {a['peak_rss_mib']} MiB, lectern behind nginx "
                     f"{b['peak_rss_mib']} MiB, nginx {n['peak_rss_mib']} MiB (master + workers, both servers)")
    finally:
        for proc in (nginx, behind, alone):
            if proc:
                proc.stop()
    return {"title": "Serving HLS: nginx static vs Lectern behind nginx (X-Accel-Redirect) vs Lectern alone "
                     "(tower-http), same files, same run",
            "rows": rows, "notes": notes, "targets": targets}


if __name__ == "__main__":
    common.main(run, "serve")
