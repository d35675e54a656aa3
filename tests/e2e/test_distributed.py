"""The distributed world's own promises, against real PostgreSQL, RabbitMQ and S3:
separate worker processes share the queue, a killed worker loses nothing, a broker
outage loses nothing, and a job that always fails ends dead-lettered with its reason."""
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from conftest import WORLD, Api, Server, ROOT
from test_media import transcode

pytestmark = pytest.mark.skipif(WORLD != "distributed", reason="needs the distributed world's services")


def cluster(tmp_path, workers=1, env=None):
    # These tests count transcode jobs: the slides job queued after them is
    # test_slides.py's.
    env = {"LECTERN_SLIDES": "off", **(env or {})}
    data = tmp_path / "data"
    catalog = Server(data, role="catalog", env=env).start()
    ingest = Server(data, role="ingest", env=env).start()
    ws = [Server(data, role="worker", env=env).start() for _ in range(workers)]
    return catalog, ingest, ws


def stop(*servers):
    for s in servers:
        s.stop()


def upload_lectures(catalog, ingest, path, n):
    owner = Api.signup(catalog.url, "owner")
    course = owner.course()
    uploader = Api(ingest.url, owner.token)
    lectures = []
    for i in range(n):
        lec = owner.lecture(course["id"], f"Lecture {i}")
        uploader.upload(lec["id"], path)
        lectures.append(lec)
    return owner, lectures


def jobs_done(server):
    return re.findall(r"transcode job done job=(\S+)", server.log_path.read_text())


def rabbit_queue(catalog, suffix):
    prefix = catalog.world["QUEUE_URL"].split("prefix=")[1]
    admin = os.environ["LECTERN_TEST_RABBIT_ADMIN"]
    r = requests.get(f"{admin}/api/queues/%2f/{quote(prefix + '.' + suffix, safe='')}")
    r.raise_for_status()
    return r.json()


def test_two_workers_share_four_jobs_each_done_once(tmp_path, lectern_bin, synth):
    catalog, ingest, workers = cluster(tmp_path, workers=2)
    try:
        owner, lectures = upload_lectures(catalog, ingest, synth.long_720p(12), 4)
        for lec in lectures:
            done, _ = owner.wait_lecture(lec["id"])
            assert done["status"] == "ready", done
        per_worker = [jobs_done(w) for w in workers]
        all_jobs = [j for js in per_worker for j in js]
        assert len(all_jobs) == 4 and len(set(all_jobs)) == 4, per_worker
        assert all(per_worker), f"one worker did nothing: {per_worker}"
        metrics = requests.get(workers[0].url + "/metrics").text
        assert re.search(r"lectern_job_duration_seconds_count \d+", metrics)
        assert "lectern_transcode_speed_ratio_bucket" in metrics
        assert requests.get(workers[0].url + "/readyz").json()["backends"] == {"storage": "ok", "queue": "ok"}
        catalog_metrics = requests.get(catalog.url + "/metrics").text
        assert 'lectern_http_request_duration_seconds_count{method="POST",route="/api/courses",status="201"}' in catalog_metrics
        assert 'lectern_queue_depth{topic="lectern.jobs"} 0' in catalog_metrics
        assert re.search(r"lectern_upload_bytes_total [1-9]", requests.get(ingest.url + "/metrics").text)
    finally:
        stop(*workers, ingest, catalog)


def test_killed_worker_loses_only_time(tmp_path, lectern_bin, synth):
    catalog, ingest, (first,) = cluster(tmp_path, workers=1)
    second = None
    try:
        owner, (lec,) = upload_lectures(catalog, ingest, synth.long_720p(40), 1)
        deadline = time.time() + 120
        while time.time() < deadline:
            now = owner.ok(owner.get(f"/api/lectures/{lec['id']}"))
            if now["status"] == "processing" and now["progress_percent"] >= 5:
                break
            time.sleep(0.2)
        assert owner.post(f"/api/lectures/{lec['id']}/playback").status_code == 409
        first.kill()
        second = Server(tmp_path / "data", role="worker").start()
        done, _ = owner.wait_lecture(lec["id"], timeout=300)
        assert done["status"] == "ready", done
        assert "attempt=2" in second.log_path.read_text()
        assert jobs_done(first) == [] and len(jobs_done(second)) == 1
        url = catalog.url + owner.playback(lec["id"])["url"]
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"], capture_output=True, text=True)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr[-1000:]
    finally:
        stop(*(s for s in (second, first, ingest, catalog) if s))


def test_chunks_are_planned_for_the_workers_the_queue_has(tmp_path, lectern_bin, synth):
    # One worker would get 24 s chunks (36 s: one of 24, one of 12), the four-rung ladder
    # split in two jobs per chunk. Two consumers on the job queue: one round of two 18 s
    # chunks, and the second chunk encoded whole (49.9 M pixels a second is under 2 x 40 M).
    env = {"LECTERN_CHUNK_SECS": "24", "LECTERN_LADDER": "fixed"}
    catalog, ingest, workers = cluster(tmp_path, workers=2, env=env)
    try:
        deadline = time.time() + 20
        while rabbit_queue(catalog, "lectern.jobs").get("consumers") != 2 and time.time() < deadline:
            time.sleep(0.2)
        owner, (lec,) = upload_lectures(catalog, ingest, synth.long_720p(36), 1)
        done, _ = owner.wait_lecture(lec["id"], timeout=300)
        assert done["status"] == "ready", done
        recorded = re.search(r"transcode jobs recorded.*", ingest.log_path.read_text()).group(0)
        assert "workers=2" in recorded and "chunks=2" in recorded and "jobs=5" in recorded, recorded
        parts = sorted(p for w in workers for p in re.findall(r'transcode job started.*part="?([\w-]+)', w.log_path.read_text()))
        assert parts == sorted(["video-00000-v360-v240", "audio", "video-00000-v720-v480",
                                "video-00003-v720-v480-v360-v240", "stills"]), parts
        url = catalog.url + owner.playback(lec["id"])["url"]
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"], capture_output=True, text=True)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr[-1000:]
    finally:
        stop(*workers, ingest, catalog)


def test_killed_worker_loses_only_its_chunk(tmp_path, lectern_bin, synth):
    chunked = {"LECTERN_CHUNK_SECS": "6", "LECTERN_LADDER": "fixed"}
    catalog, ingest, (first,) = cluster(tmp_path, workers=1, env=chunked)
    second = None
    try:
        owner, (lec,) = upload_lectures(catalog, ingest, synth.long_720p(40), 1)
        # 40 s in 6 s chunks: the audio, 7 low-rung chunks, 7 others, the stills.
        deadline = time.time() + 180
        while time.time() < deadline:
            log = first.log_path.read_text()
            if len(jobs_done(first)) >= 4 and log.count("transcode job started") > len(jobs_done(first)):
                break
            time.sleep(0.1)
        first.kill()
        done_by_first = jobs_done(first)
        assert len(done_by_first) >= 4, first.log_path.read_text()[-2000:]
        second = Server(tmp_path / "data", role="worker", env=chunked).start()
        done, _ = owner.wait_lecture(lec["id"], timeout=300)
        assert done["status"] == "ready", done
        done_by_second = jobs_done(second)
        # Only the job in hand when the worker died is done again; nothing the first
        # worker finished is repeated.
        assert not set(done_by_first) & set(done_by_second), (done_by_first, done_by_second)
        assert len(set(done_by_first) | set(done_by_second)) == 16, (done_by_first, done_by_second)
        again = [line for line in second.log_path.read_text().splitlines()
                 if "transcode job started" in line and line.endswith("attempt=2")]
        assert len(again) == 1, again
        url = catalog.url + owner.playback(lec["id"])["url"]
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"], capture_output=True, text=True)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr[-1000:]
    finally:
        stop(*(s for s in (second, first, ingest, catalog) if s))


def services(*args):
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), *args], check=True, capture_output=True)


def test_broker_outage_loses_no_job(tmp_path, lectern_bin, samples):
    catalog, ingest, workers = cluster(tmp_path, workers=1)
    try:
        owner = Api.signup(catalog.url, "owner")
        course = owner.course()
        lectures = [owner.lecture(course["id"], f"During the outage {i}") for i in range(2)]
        services("stop-rabbitmq")
        try:
            deadline = time.time() + 20
            while requests.get(catalog.url + "/readyz").status_code == 200 and time.time() < deadline:
                time.sleep(0.2)
            ready = requests.get(catalog.url + "/readyz")
            assert ready.status_code == 503 and ready.json()["backends"]["queue"] == "unavailable", ready.text
            uploader = Api(ingest.url, owner.token)
            for lec in lectures:
                uploader.upload(lec["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
            time.sleep(2)
            for lec in lectures:
                assert owner.ok(owner.get(f"/api/lectures/{lec['id']}"))["status"] == "processing"
        finally:
            services("start-rabbitmq")
        for lec in lectures:
            done, _ = owner.wait_lecture(lec["id"], timeout=180)
            assert done["status"] == "ready", done
        assert requests.get(catalog.url + "/readyz").status_code == 200
    finally:
        stop(*workers, ingest, catalog)


def test_a_job_that_always_fails_is_dead_lettered_with_its_reason(tmp_path, lectern_bin, samples):
    env = {"LECTERN_MAX_ATTEMPTS": "3", "LECTERN_RETRY_BASE_SECS": "1"}
    catalog, ingest, _ = cluster(tmp_path, workers=0, env=env)
    worker = None
    try:
        owner, (lec,) = upload_lectures(catalog, ingest, samples / "good/rocket_launch_vp8_vorbis_640x360.webm", 1)
        owner.wait_lecture(lec["id"], statuses=("processing",))
        time.sleep(1)
        (upload_key,) = [k for k in catalog.list_stored("uploads/") if re.fullmatch(r"uploads/[0-9a-f]{32}", k)]
        catalog.delete_stored(upload_key)  # the source is gone: every attempt fails
        worker = Server(tmp_path / "data", role="worker", env=env).start()
        done, _ = owner.wait_lecture(lec["id"], timeout=120)
        assert done["status"] == "failed", done
        assert "after 3 attempts" in done["failure_reason"] and "not found" in done["failure_reason"], done
        log = worker.log_path.read_text()
        assert "attempt=1" in log and "attempt=2" in log and "attempt=3" in log
        # The management API's counts are sampled every few seconds: wait for them.
        counts = lambda: (rabbit_queue(catalog, "lectern.jobs.dead").get("messages"), rabbit_queue(catalog, "lectern.jobs").get("messages"))
        deadline = time.time() + 20
        while counts() != (1, 0) and time.time() < deadline:
            time.sleep(0.5)
        assert counts() == (1, 0), "the job should sit in the dead-letter queue only"
    finally:
        stop(*(s for s in (worker, ingest, catalog) if s))



def test_direct_delivery_serves_segments_from_presigned_storage_urls(tmp_path, lectern_bin, samples):
    server = Server(tmp_path / "data", env={"PLAYBACK_DELIVERY": "direct"}).start()
    try:
        owner = Api.signup(server.url, "owner")
        lec, _ = transcode(owner, samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
        assert lec["status"] == "ready"
        master_url = server.url + owner.playback(lec["id"])["url"]
        master = requests.get(master_url).text
        rendition = [l for l in master.splitlines() if l and not l.startswith("#")][0]
        playlist = requests.get(master_url.rsplit("/", 1)[0] + "/" + rendition)
        assert playlist.headers["Cache-Control"] == "private, no-store"
        segments = [l for l in playlist.text.splitlines() if l and not l.startswith("#")]
        endpoint = os.environ["LECTERN_TEST_S3_ENDPOINT"]
        assert segments and all(u.startswith(endpoint) and "X-Amz-Signature=" in u for u in segments), segments
        # The web app may fetch those segments: its CSP lets it connect to the S3 origin.
        assert endpoint in requests.get(server.url + "/healthz").headers["Content-Security-Policy"]
        first = requests.get(segments[0])
        assert first.status_code == 200 and first.content[0] == 0x47
        forged = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, segments[0])
        assert requests.get(forged).status_code == 403
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", master_url, "-map", "0", "-f", "null", "-"], capture_output=True, text=True)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr[-1000:]
    finally:
        server.stop()


def test_direct_delivery_needs_s3(tmp_path, lectern_bin):
    env = {k: v for k, v in os.environ.items()}
    env.update({"PLAYBACK_DELIVERY": "direct", "STORAGE_URL": f"file://{tmp_path}/objects", "LECTERN_DATA_DIR": str(tmp_path)})
    out = subprocess.run([str(lectern_bin), "catalog"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "needs S3 storage" in out.stderr
