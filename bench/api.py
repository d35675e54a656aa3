"""API under load: the course list, a course's detail and playback-token issue, in the
embedded world (SQLite, local files, the in-process queue) or, with `--world
distributed`, against PostgreSQL, RabbitMQ and S3 from `scripts/services.sh start`.

Seeds 200 published courses with 3 lectures each through the API (4 owners), one more
course with a lecture that is really uploaded and transcoded, and a student enrolled
in it. Then, per endpoint, as that student:
  1. a fixed offered rate of 1000 req/s (h2load, 50 keep-alive connections, each
     sending 20 a second) — the issue's target: p99 < 10 ms at 1000 req/s;
  2. the most it does with 16 connections (wrk, closed loop): req/s, p50/p95/p99 — the
     seeds' target p95 < 300 ms, here at saturation, which is stricter.
The list walks pages 1–10 of 20, the detail walks all 200 courses.

Run: python3 bench/api.py [--quick] [--bin PATH] [--work DIR] [--world embedded|distributed]
"""
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

COURSES, LECTURES_PER_COURSE, OWNERS = 200, 3, 4
RATE, RATE_CLIENTS = 1000, 50
WRK_CONNECTIONS = 16
DURATION_S = 10


def distributed_env(work):
    """Backends for the distributed world: a fresh PostgreSQL database, an S3 key prefix
    and a queue prefix on the services of `scripts/services.sh` (which must be running).
    Returns (env for lectern, cleanup function)."""
    env = dict(os.environ)
    if "LECTERN_TEST_DATABASE_URL" not in env:
        env.update(common.services_env("env"))
    for var in ("LECTERN_TEST_DATABASE_URL", "LECTERN_TEST_QUEUE_URL", "LECTERN_TEST_S3_ENDPOINT"):
        u = urllib.parse.urlsplit(env[var])
        try:
            socket.create_connection((u.hostname, u.port), timeout=2).close()
        except OSError:
            raise RuntimeError(f"--world distributed: {var} ({u.hostname}:{u.port}) does not answer; "
                               "start the services with `eval \"$(scripts/services.sh start)\"`")
    name = "bench" + os.urandom(5).hex()
    admin = env["LECTERN_TEST_DATABASE_URL"]
    subprocess.run(["psql", f"{admin}/postgres", "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    lectern_env = {
        "DATABASE_URL": f"{admin}/{name}",
        "STORAGE_URL": f"s3://lectern-bench?endpoint={env['LECTERN_TEST_S3_ENDPOINT']}&region=us-east-1"
                       f"&path_style=true&prefix={name}",
        "QUEUE_URL": f"{env['LECTERN_TEST_QUEUE_URL']}?prefix={name}",
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", ""),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", ""),
    }

    def cleanup():
        subprocess.run(["psql", f"{admin}/postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                       capture_output=True)
    return lectern_env, cleanup, name


def seed(base, courses, lectures_per_course, owners):
    """Published courses with lectures (awaiting upload), created in parallel by a few owners."""
    accounts = [common.Api.signup(base, "owner") for _ in range(owners)]

    def one(i):
        owner = accounts[i % owners]
        c = owner.post("/api/courses", {"title": f"Course {i:03d}: bench topic {i % 17}",
                                        "description": f"Seeded course number {i} for the API benchmark.",
                                        "category": ["math", "code", "music", "art"][i % 4], "published": True})
        for j in range(lectures_per_course):
            owner.post(f"/api/courses/{c['id']}/lectures", {"title": f"Lecture {j + 1}"})
        return c["id"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(courses)))


def run(quick, lectern_bin, work, world=None):
    world = world or os.environ.get("LECTERN_BENCH_WORLD", "embedded")
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    common.raise_nofile()
    common.apt_install("wrk", "wrk")
    common.apt_install("nghttp2-client", "h2load")
    duration = 2 if quick else DURATION_S
    notes = common.machine_notes()
    notes += [
        f"world: {world}; lectern binary: {lectern_bin}; rate limits off, RUST_LOG=warn",
        f"lectern, the load generators and the seeding client share the machine's {os.cpu_count()} cores",
        f"fixed rate: h2load offers {RATE} req/s over {RATE_CLIENTS} HTTP/1.1 keep-alive connections "
        f"({RATE // RATE_CLIENTS}/s each, one request in flight per connection), after a 1 s warm-up; latency is "
        "timed from each request's send, so a server that falls behind shows as an achieved rate below the "
        "offered one (compare `rate_rps` to `rate_offered`) rather than as queueing delay; the connections are spread "
        "over 10 h2load processes started evenly across one 50 ms tick (one h2load fires all its connections on the "
        "same tick: 50 requests at once, whose queue dominated every percentile, 6-8 ms p50 for any endpoint)",
        f"max throughput: wrk, closed loop, {WRK_CONNECTIONS} connections, 2 threads; its p95/p99 are measured "
        "at saturation, stricter than at a fixed rate (wrk2, the fixed-rate wrk, is not in Debian)",
        "requests are made as a signed-in student (JWT checked on every request); list = GET /api/courses "
        "pages 1-10 (20 per page), detail = GET /api/courses/{id} over all seeded courses, "
        "playback = POST /api/lectures/{id}/playback of one ready lecture the student is enrolled in",
    ]
    if "/debug/" in str(lectern_bin):
        notes.append("DEBUG build: Lectern's numbers are not representative; run with the release build")
    if quick:
        notes.append(f"QUICK mode: {duration} s per measurement; it checks the machinery, not the targets")

    env, cleanup = {}, None
    lectern = None
    rows, targets = [], []
    try:
        if world == "distributed":
            env, cleanup, name = distributed_env(work)
            notes.append(f"distributed world: database, S3 prefix and queue prefix `{name}` (the database is "
                         "dropped afterwards; S3 objects and queues stay)")
        elif world != "embedded":
            raise ValueError(f"unknown world {world!r}")
        lectern = common.Lectern(lectern_bin, work / "data", env=env)  # assigned first: `finally` stops it
        lectern.start()
        t0 = time.time()
        course_ids = seed(lectern.url, COURSES, LECTURES_PER_COURSE, OWNERS)
        notes.append(f"seeded {COURSES} courses x {LECTURES_PER_COURSE} lectures through the API "
                     f"in {time.time() - t0:.1f} s (4 client threads)")
        owner = common.Api.signup(lectern.url, "owner")
        course, lecture, secs = common.ready_lecture(owner, common.test_video(4, 640, 360), "Bench: the playable course")
        notes.append(f"one lecture uploaded over tus and transcoded in {secs} s (4 s 640x360 test video)")
        student = common.Api.signup(lectern.url, "student")
        student.post(f"/api/courses/{course['id']}/enroll", {})
        for cid in course_ids[:5]:
            student.post(f"/api/courses/{cid}/enroll", {})
        listing = student.get("/api/courses?page=1")
        if listing["total"] < COURSES:
            raise RuntimeError(f"the list shows {listing['total']} courses, seeded {COURSES}")

        auth = student.headers()
        endpoints = [
            ("list", "GET", [f"/api/courses?page={p}" for p in range(1, COURSES // 20 + 1)]),
            ("detail", "GET", [f"/api/courses/{cid}" for cid in course_ids]),
            ("playback", "POST", [f"/api/lectures/{lecture['id']}/playback"]),
        ]
        for name, method, paths in endpoints:
            before = lectern.stats()
            fixed = common.h2load_rate([lectern.url + p for p in paths], RATE, duration, clients=RATE_CLIENTS,
                                       method=method, headers=auth, work=str(work))
            time.sleep(0.5)
            sat = common.wrk(lectern.url + paths[0], WRK_CONNECTIONS, duration, method=method,
                             headers={**auth, "Content-Type": "application/json"} if method == "POST" else auth,
                             body="{}" if method == "POST" else None, paths=paths)
            after = lectern.stats()
            time.sleep(0.5)
            served = fixed["requests"] + sat["requests"]
            cpu = (after["cpu_s"] or 0) - (before["cpu_s"] or 0)
            rows.append({
                "endpoint": name, "request": f"{method} {paths[0]}" + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else ""),
                "rate_offered": fixed["offered_rps"], "rate_rps": fixed["rps"],
                "rate_p50_ms": fixed["p50_ms"], "rate_p95_ms": fixed["p95_ms"], "rate_p99_ms": fixed["p99_ms"],
                "rate_max_ms": fixed["max_ms"], "rate_non_2xx": fixed["non_2xx"], "rate_failed": fixed["failed"],
                "max_rps": sat["rps"], "max_p50_ms": sat["p50_ms"], "max_p95_ms": sat["p95_ms"],
                "max_p99_ms": sat["p99_ms"], "max_errors": common.http_error_total(sat),
                "cpu_us_per_req": round(cpu * 1e6 / served, 1) if served else None,
            })
            if fixed["non_2xx"] or fixed["failed"] or common.http_error_total(sat):
                notes.append(f"{name}: errors under load: fixed rate statuses {fixed['statuses']}, "
                             f"failed {fixed['failed']}; wrk {sat['errors']}")
            if not lectern.alive():
                raise RuntimeError(f"lectern died under load: {lectern.log_tail()}")

        for r in rows:
            n = r["endpoint"]
            targets.append(common.target(f"{n}: p99 ms at {RATE} req/s offered", r["rate_p99_ms"], "< 10",
                                         r["rate_p99_ms"] is not None and r["rate_p99_ms"] < 10))
            targets.append(common.target(f"{n}: req/s achieved at {RATE} req/s offered", r["rate_rps"],
                                         f">= {int(RATE * 0.95)}", r["rate_rps"] >= RATE * 0.95))
            targets.append(common.target(f"{n}: req/s at saturation ({WRK_CONNECTIONS} connections)", r["max_rps"],
                                         f">= {RATE}", r["max_rps"] >= RATE))
            targets.append(common.target(f"{n}: p95 ms at saturation ({WRK_CONNECTIONS} connections)", r["max_p95_ms"],
                                         "< 300", r["max_p95_ms"] < 300))
        errors = sum(r["rate_non_2xx"] + (r["rate_failed"] or 0) + r["max_errors"] for r in rows)
        targets.append(common.target("errors under load (non-2xx, failed, socket errors)", errors, "== 0", errors == 0))
        s = lectern.stats()
        notes.append(f"lectern peak RSS {s['peak_rss_mib']} MiB (includes one small transcode), "
                     f"CPU {s['cpu_s']} s over the whole run")
    finally:
        if lectern:
            lectern.stop()
        if cleanup:
            cleanup()
    return {"title": f"API under load ({world} world): list, detail, playback-token issue",
            "rows": rows, "notes": notes, "targets": targets}


if __name__ == "__main__":
    common.main(run, "api", lambda p: p.add_argument(
        "--world", choices=["embedded", "distributed"], default=None,
        help="embedded (default; or LECTERN_BENCH_WORLD) or distributed (needs scripts/services.sh start)"))
