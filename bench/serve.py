"""Serving benchmark: nginx serving Lectern's HLS files statically vs Lectern's
token-checked `/play/{token}/…`, the same bytes, in the same run.

A real lecture is made first (a 10 s 720p test video uploaded over tus and transcoded
by `lectern serve`); nginx's root is that lecture's asset folder in Lectern's data
folder, so both servers send identical files (checked before measuring). wrk then asks
for one top-rung segment and, separately, the top rung's media playlist at 64, 256
and 1000 connections (quick: 64 only, 2 s). Reported per case: requests/s, p50, p99
of both, the ratio lectern/nginx, errors and the servers' CPU time per request.

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
TARGET_CONNECTIONS = 256  # the targets: >= 0.9x nginx req/s, p99 < 10 ms, here

NGINX_CONF = """\
# Written by bench/serve.py: stock static serving tuned like a CDN origin would be.
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
}}
"""


class Nginx:
    """An nginx master (daemon off) with our own config, pid file and logs in `work`."""

    def __init__(self, work, root, workers):
        self.work, self.root, self.workers = Path(work), Path(root), workers
        self.port = common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout=15):
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read Lectern's files
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, workers=self.workers, work=self.work,
                                          port=self.port, root=self.root))
        log = open(self.work / "nginx-stderr.log", "ab")
        self.proc = subprocess.Popen(["nginx", "-p", str(self.work), "-e", str(self.work / "nginx-error.log"),
                                      "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.work / 'nginx-error.log').read_text()[-2000:]}")
            status, _, _ = _get(self.url + "/master.m3u8")
            if status == 200:
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


def measure(server, url, connections, duration):
    before = server.stats()
    r = common.wrk(url, connections, duration)
    after = server.stats()
    cpu = (after["cpu_s"] or 0) - (before["cpu_s"] or 0)
    r["server_cpu_us_per_req"] = round(cpu * 1e6 / r["requests"], 1) if r["requests"] else None
    return r


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
    notes = common.machine_notes()
    notes += [
        f"lectern, nginx and wrk share the machine's {os.cpu_count()} cores: every number includes the "
        "load generator's own CPU use, and the two servers are measured one after the other, never at once",
        "nginx: 1 worker per core, sendfile, access_log off (Lectern writes no access log either), "
        "keep-alive without a request cap; Lectern: `serve` (embedded world), RUST_LOG=warn, rate limits off",
        "wrk: closed loop (-t2, each connection waits for its answer), keep-alive; latencies exclude "
        "requests that timed out (10 s), which are counted under errors",
        f"lectern binary: {lectern_bin}",
    ]
    if "/debug/" in str(lectern_bin):
        notes.append("DEBUG build: Lectern's numbers are not representative; run with the release build")
    if quick:
        notes.append("QUICK mode: 2 s per case, 64 connections only; it checks the machinery, not the targets")

    lectern = nginx = None
    rows, targets = [], []
    try:
        lectern = common.Lectern(lectern_bin, work / "data")  # assigned first: `finally` stops it
        lectern.start()
        owner = common.Api.signup(lectern.url, "owner")
        video = common.test_video(10, 1280, 720)
        _, lecture, secs = common.ready_lecture(owner, video, "Serving benchmark")
        notes.append(f"test lecture: {video.name} uploaded and transcoded in {secs} s")
        # A fresh process serves: its peak RSS and CPU then belong to serving, not the transcode.
        lectern.stop()
        lectern.start()
        grant = owner.post(f"/api/lectures/{lecture['id']}/playback")
        play_base = lectern.url + grant["url"].rsplit("/", 1)[0]  # …/play/<token>
        assets = [p for p in (work / "data" / "objects" / "assets").iterdir() if p.is_dir()]
        if len(assets) != 1:
            raise RuntimeError(f"expected one asset folder, found {len(assets)}")
        asset = assets[0]
        playlist, resolution = top_rung(asset)
        rung = playlist.rsplit("/", 1)[0]
        segments = sorted((asset / rung).glob("*.ts"), key=lambda p: p.stat().st_size, reverse=True)
        segment = f"{rung}/{segments[0].name}"  # the largest: a full-length segment

        nginx = Nginx(work, asset, os.cpu_count() or 1)
        nginx.start()
        files = [("segment", segment), ("playlist", playlist)]
        for kind, path in files:
            a, b = _get(f"{nginx.url}/{path}"), _get(f"{play_base}/{path}")
            if a[0] != 200 or b[0] != 200 or hashlib.sha256(a[2]).digest() != hashlib.sha256(b[2]).digest():
                raise RuntimeError(f"{path}: nginx {a[0]} and lectern {b[0]} do not send the same bytes")
            notes.append(f"{kind}: {path} ({len(a[2]):,} bytes, {resolution} rung), identical from both servers")

        for kind, path in files:
            size = (asset / path).stat().st_size
            for i, c in enumerate(connections):
                # Alternate who goes first so a drift in the machine's load hits both alike.
                order = [("nginx", nginx, f"{nginx.url}/{path}"), ("lectern", lectern, f"{play_base}/{path}")]
                if i % 2:
                    order.reverse()
                res = {}
                for name, server, url in order:
                    res[name] = measure(server, url, c, duration)
                    time.sleep(0.5)
                n, l = res["nginx"], res["lectern"]
                rows.append({
                    "file": kind, "path": path, "bytes": size, "connections": c,
                    "nginx_rps": n["rps"], "lectern_rps": l["rps"], "rps_ratio": common.ratio(l["rps"], n["rps"]),
                    "nginx_p50_ms": n["p50_ms"], "lectern_p50_ms": l["p50_ms"],
                    "nginx_p99_ms": n["p99_ms"], "lectern_p99_ms": l["p99_ms"],
                    "p99_ratio": common.ratio(l["p99_ms"], n["p99_ms"]),
                    "nginx_mb_s": n["mb_per_s"], "lectern_mb_s": l["mb_per_s"],
                    "nginx_cpu_us_per_req": n["server_cpu_us_per_req"],
                    "lectern_cpu_us_per_req": l["server_cpu_us_per_req"],
                    "nginx_errors": common.http_error_total(n), "lectern_errors": common.http_error_total(l),
                })
                for name, r in res.items():
                    if common.http_error_total(r):
                        notes.append(f"{name} errors at {c} connections on the {kind}: {r['errors']}")
                if not lectern.alive():
                    raise RuntimeError(f"lectern died under load: {lectern.log_tail()}")

        at = TARGET_CONNECTIONS if TARGET_CONNECTIONS in connections else max(connections)
        for kind, _ in files:
            row = next(r for r in rows if r["file"] == kind and r["connections"] == at)
            targets.append(common.target(f"{kind}: lectern/nginx req/s at {at} connections", row["rps_ratio"],
                                         ">= 0.9", (row["rps_ratio"] or 0) >= 0.9))
            targets.append(common.target(f"{kind}: lectern p99 ms at {at} connections", row["lectern_p99_ms"],
                                         "< 10", row["lectern_p99_ms"] < 10))
            # Little's law for a closed loop: every connection always has one request
            # in flight, so the mean latency is connections / throughput, whoever serves.
            floor_ms = {name: round(at / row[f"{name}_rps"] * 1000, 1) for name in ("nginx", "lectern") if row[f"{name}_rps"]}
            notes.append(f"{kind} at {at} connections: with every connection always waiting (closed loop), the mean "
                         f"latency is connections / req/s (Little's law): nginx {floor_ms.get('nginx')} ms, lectern "
                         f"{floor_ms.get('lectern')} ms; a p99 under 10 ms here would need over {at * 100} req/s")
        errors = sum(r["lectern_errors"] for r in rows)
        targets.append(common.target("lectern errors under load (non-2xx, socket errors, timeouts)", errors,
                                     "== 0", errors == 0))
        if at != TARGET_CONNECTIONS:
            notes.append(f"targets are the issue's at {TARGET_CONNECTIONS} connections; this run measured at {at}")
        ls, ns = lectern.stats(), nginx.stats()
        notes.append(f"peak RSS while serving: lectern {ls['peak_rss_mib']} MiB (restarted after the transcode), "
                     f"nginx {ns['peak_rss_mib']} MiB (master + workers)")
    finally:
        if nginx:
            nginx.stop()
        if lectern:
            lectern.stop()
    return {"title": "Serving HLS: Lectern /play/{token}/… vs nginx static, same files, same run",
            "rows": rows, "notes": notes, "targets": targets}


if __name__ == "__main__":
    common.main(run, "serve")
