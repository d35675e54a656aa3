"""SIGTERM, as Kubernetes sends it before removing a pod: a worker takes no new job,
finishes the one in hand (or hands it back after its grace period) and exits 0; the
APIs drain and exit 0."""
import re
import signal
import time

from conftest import Api, Server


def started_jobs(server):
    return re.findall(r"transcode job started job=(\S+)", server.log_path.read_text())


def processing_at(owner, lecture_id, percent, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = owner.ok(owner.get(f"/api/lectures/{lecture_id}"))
        if now["status"] == "processing" and now["progress_percent"] >= percent:
            return
        time.sleep(0.2)
    raise AssertionError(f"lecture {lecture_id} never reached {percent}%")


def test_a_stopping_worker_finishes_its_job_and_takes_no_other(tmp_path, lectern_bin, synth, samples):
    data = tmp_path / "data"
    catalog = Server(data, role="catalog").start()
    ingest = Server(data, role="ingest").start()
    worker = Server(data, role="worker").start()
    second_worker = None
    try:
        owner = Api.signup(catalog.url, "owner")
        course = owner.course()
        uploader = Api(ingest.url, owner.token)
        long = owner.lecture(course["id"], "Long")
        uploader.upload(long["id"], synth.long_720p(40))
        processing_at(owner, long["id"], 5)
        worker.proc.send_signal(signal.SIGTERM)
        short = owner.lecture(course["id"], "Queued behind")
        uploader.upload(short["id"], samples / "audio_only/chime_opus_2s.webm")
        assert worker.proc.wait(timeout=180) == 0
        assert "transcode job done" in worker.log_path.read_text()
        assert len(started_jobs(worker)) == 1, "the stopping worker took another job"
        # Its ready event reaches the catalog through the queue.
        assert owner.wait_lecture(long["id"], timeout=30)[0]["status"] == "ready"
        time.sleep(1)
        assert owner.ok(owner.get(f"/api/lectures/{short['id']}"))["status"] == "processing"
        second_worker = Server(data, role="worker").start()
        done, _ = owner.wait_lecture(short["id"])
        assert done["status"] == "ready", done
    finally:
        for s in (second_worker, worker, ingest, catalog):
            if s:
                s.stop()


def test_after_its_grace_period_a_worker_hands_the_job_back(tmp_path, lectern_bin, synth):
    data = tmp_path / "data"
    catalog = Server(data, role="catalog").start()
    ingest = Server(data, role="ingest").start()
    worker = Server(data, role="worker", env={"LECTERN_SHUTDOWN_GRACE_SECS": "1"}).start()
    second_worker = None
    try:
        owner = Api.signup(catalog.url, "owner")
        lec = owner.lecture(owner.course()["id"], "Long")
        Api(ingest.url, owner.token).upload(lec["id"], synth.long_720p(40))
        processing_at(owner, lec["id"], 5)
        stopped_at = time.time()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=30) == 0
        assert time.time() - stopped_at < 15
        assert "handed back to the queue" in worker.log_path.read_text()
        assert owner.ok(owner.get(f"/api/lectures/{lec['id']}"))["status"] == "processing"
        second_worker = Server(data, role="worker").start()
        done, _ = owner.wait_lecture(lec["id"], timeout=300)
        assert done["status"] == "ready", done
    finally:
        for s in (second_worker, worker, ingest, catalog):
            if s:
                s.stop()


def test_apis_exit_cleanly_on_sigterm(tmp_path, lectern_bin):
    data = tmp_path / "data"
    for role in ("serve", "catalog", "ingest"):
        s = Server(data, role=role).start()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=30) == 0, role
