"""Dead and hung backends, under load: stopping PostgreSQL, then S3, then RabbitMQ while
clients keep asking, then freezing each (SIGSTOP: connections are accepted, nothing
answers). Requests that need the dead backend are refused at once (503,
Retry-After) once its circuit breaker opens, what does not need it goes on (segments
need no database), nothing is lost, and service comes back by itself within seconds
of the backend's return. Distributed world only: the embedded world's backends live
inside the process."""
import statistics
import subprocess
from urllib.parse import urlparse
import threading
import time

import pytest
import requests

from conftest import ROOT, WORLD, Api, Server
from test_tus import TUS, meta, offset_of, patch

pytestmark = pytest.mark.skipif(WORLD != "distributed", reason="the embedded world's backends are inside the process")


def services(*args):
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), *args], check=True, capture_output=True)


class Load:
    """Clients asking `urls` in a loop, each answer kept with its time and latency."""

    def __init__(self, urls, headers, clients=4):
        self.urls, self.headers, self.log = urls, headers, []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, i):
        session = requests.Session()
        n = i
        while not self.stop.is_set():
            kind, url = self.urls[n % len(self.urls)]
            n += 1
            t0 = time.time()
            try:
                status = session.get(url, headers=self.headers, timeout=30).status_code
            except requests.RequestException:
                status = 0
            self.log.append((t0, kind, status, time.time() - t0))
            time.sleep(0.01)

    def since(self, t, kind=None):
        return [e for e in self.log if e[0] >= t and (kind is None or e[1] == kind)]

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else None


def wait_until(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(0.1)
    raise AssertionError("it did not happen in time")


def test_dead_backends_are_refused_fast_lose_nothing_and_come_back(tmp_path, lectern_bin, samples):
    server = Server(tmp_path / "data").start()
    load = None
    measured = {}
    try:
        owner, course, load = ready_lecture_with_load(server, samples)
        time.sleep(1)

        for backend, needs in (("postgres", "api"), ("seaweedfs", "segment")):
            other = "segment" if needs == "api" else "api"
            services(f"stop-{backend}")
            stopped = time.time()
            try:
                opened = wait_until(lambda: any(s == 503 for _, k, s, _ in load.since(stopped, needs)), 20)
                time.sleep(3)
                refused = [e for e in load.since(opened, needs) if e[2] == 503]
                assert refused, f"{backend}: nothing refused"
                fast = p99([e[3] for e in refused])
                assert fast < 0.1, f"{backend}: p99 of refusals {fast * 1000:.0f} ms"
                answered = [e for e in load.since(stopped, other)]
                assert answered and all(e[2] == 200 for e in answered), f"{backend}: {other} requests suffered: {[e[2] for e in answered][:20]}"
                ready = requests.get(server.url + "/readyz", timeout=10).json()
                assert "open" in ready["breakers"].values(), ready
            finally:
                services(f"start-{backend}")
            back = time.time()
            recovered = wait_until(lambda: (lambda last: last and all(e[2] == 200 for e in last[-4:]))(load.since(back, needs)), 30)
            measured[backend] = {
                "breaker_opened_after_s": round(opened - stopped, 2),
                "refusals": len(refused),
                "refusal_p50_ms": round(statistics.median(e[3] for e in refused) * 1000, 1),
                "refusal_p99_ms": round(fast * 1000, 1),
                "recovered_after_s": round(recovered - back, 2),
            }

        # RabbitMQ: nothing needs it to answer; an upload made meanwhile is transcoded
        # once it is back (the job outbox).
        services("stop-rabbitmq")
        stopped = time.time()
        try:
            during = owner.lecture(course["id"], "During the broker outage")
            owner.upload(during["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
            time.sleep(2)
            answered = load.since(stopped)
            assert answered and all(e[2] == 200 for e in answered), [e[2] for e in answered][:20]
        finally:
            services("start-rabbitmq")
        measured["rabbitmq"] = {"requests_during": len(answered), **ready_once_back(server, owner, during)}
        print("measured:", measured)
    finally:
        if load:
            load.close()
        for backend in ("postgres", "seaweedfs", "rabbitmq"):
            services(f"start-{backend}")
        server.stop()


def ready_lecture_with_load(server, samples):
    """An owner, a ready lecture, and clients asking for an API route (database) and one
    of its segments (storage)."""
    owner = Api.signup(server.url, "owner")
    course = owner.course()
    lecture = owner.lecture(course["id"], "Before the outages")
    owner.upload(lecture["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
    owner.wait_lecture(lecture["id"])
    master = owner.playback(lecture["id"])["url"]
    base = server.url + master.rsplit("/", 1)[0] + "/"
    rung = [line for line in requests.get(server.url + master, timeout=10).text.splitlines() if line and not line.startswith("#")][0]
    playlist = requests.get(base + rung, timeout=10).text
    segment = [line for line in playlist.splitlines() if line and not line.startswith("#")][0]
    segment_url = base + rung.rsplit("/", 1)[0] + "/" + segment
    assert requests.get(segment_url, timeout=10).status_code == 200
    load = Load([("api", f"{server.url}/api/courses/{course['id']}"), ("segment", segment_url)], owner.headers())
    return owner, course, load


def ready_once_back(server, owner, lecture):
    """The broker is back: the lecture uploaded meanwhile becomes ready, and so does the
    process."""
    back = time.time()
    done, _ = owner.wait_lecture(lecture["id"], timeout=180)
    assert done["status"] == "ready", done
    ready_after = time.time() - back
    wait_until(lambda: requests.get(server.url + "/readyz", timeout=10).status_code == 200, 15)
    return {"upload_ready_after_s": round(ready_after, 1)}


def half_upload(owner, course, path):
    """A lecture whose upload has its first half in; the upload's path and the bytes."""
    lecture = owner.lecture(course["id"], f"Interrupted {time.time()}")
    data = path.read_bytes()
    r = owner.post("/api/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                            "Upload-Metadata": meta(lecture_id=lecture["id"], filename=path.name)})
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    upload = urlparse(loc).path if loc.startswith("http") else loc
    assert patch(owner, upload, 0, data[: len(data) // 2]).status_code == 204
    return lecture, upload, data


def test_hung_backends_are_refused_fast_lose_no_upload_and_come_back(tmp_path, lectern_bin, samples):
    limit = 5
    server = Server(tmp_path / "data", env={"LECTERN_REQUEST_TIMEOUT_SECS": str(limit)}).start()
    load = None
    measured = {}
    source = samples / "good/rocket_launch_vp8_vorbis_640x360.webm"
    try:
        owner, course, load = ready_lecture_with_load(server, samples)
        time.sleep(1)
        for backend, needs in (("postgres", "api"), ("seaweedfs", "segment")):
            other = "segment" if needs == "api" else "api"
            lecture, upload, data = half_upload(owner, course, source)
            services(f"freeze-{backend}")
            frozen = time.time()
            try:
                opened = wait_until(lambda: any(s == 503 for _, k, s, _ in load.since(frozen, needs)), 20)
                time.sleep(2)
                # The rest of the upload, while the backend hangs: refused at once, nothing taken.
                t0 = time.time()
                r = patch(owner, upload, len(data) // 2, data[len(data) // 2:])
                patch_secs = time.time() - t0
                assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
                assert "retry-after" in r.headers
                refused = [e for e in load.since(opened) if e[1] == needs and e[2] == 503]
                fast = p99([e[3] for e in refused])
                assert refused and fast < 0.1, f"{backend}: p99 of refusals {fast}"
                # Requests caught by the hang end at the time limit, not at the backend's return.
                slowest = max(e[3] for e in load.since(frozen))
                assert slowest < limit + 2, f"{backend}: a request took {slowest:.1f} s"
                answered = load.since(frozen, other)
                assert answered and all(e[2] == 200 for e in answered), f"{backend}: {other} requests suffered: {[e[2] for e in answered][:20]}"
            finally:
                services(f"thaw-{backend}")
            back = time.time()
            recovered = wait_until(lambda: (lambda last: last and all(e[2] == 200 for e in last[-4:]))(load.since(back, needs)), 30)
            # Resumed where it stopped: the first half was kept.
            assert offset_of(owner, upload) == len(data) // 2
            assert patch(owner, upload, len(data) // 2, data[len(data) // 2:]).status_code == 204
            done, _ = owner.wait_lecture(lecture["id"], timeout=180)
            assert done["status"] == "ready", done
            measured[backend] = {
                "breaker_opened_after_s": round(opened - frozen, 2),
                "slowest_request_s": round(slowest, 2),
                "refusals": len(refused),
                "refusal_p99_ms": round(fast * 1000, 1),
                "refused_patch_ms": round(patch_secs * 1000, 1),
                "recovered_after_s": round(recovered - back, 2),
            }

        # A hung broker: the upload's last byte is answered at once (the live event is
        # sent in the background) and the lecture is transcoded once the broker answers.
        lecture, upload, data = half_upload(owner, course, source)
        services("freeze-rabbitmq")
        frozen = time.time()
        try:
            t0 = time.time()
            assert patch(owner, upload, len(data) // 2, data[len(data) // 2:]).status_code == 204
            last_patch = time.time() - t0
            assert last_patch < 2, f"the last PATCH waited {last_patch:.1f} s on the broker"
            wait_until(lambda: requests.get(server.url + "/readyz", timeout=10).json()["breakers"].get("queue") == "open", 20)
            answered = load.since(frozen)
            assert answered and all(e[2] == 200 for e in answered), [e[2] for e in answered][:20]
        finally:
            services("thaw-rabbitmq")
        measured["rabbitmq"] = {"last_patch_ms": round(last_patch * 1000, 1), "requests_during": len(answered),
                                **ready_once_back(server, owner, lecture)}
        print("measured:", measured)
    finally:
        if load:
            load.close()
        for backend in ("postgres", "seaweedfs", "rabbitmq"):
            subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), f"thaw-{backend}"], capture_output=True)
        server.stop()
