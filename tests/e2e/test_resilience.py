"""Dead backends, under load: stopping PostgreSQL, then S3, then RabbitMQ while
clients keep asking. Requests that need the dead backend are refused at once (503,
Retry-After) once its circuit breaker opens, what does not need it goes on (segments
need no database), nothing is lost, and service comes back by itself within seconds
of the backend's return. Distributed world only: the embedded world's backends live
inside the process."""
import statistics
import subprocess
import threading
import time

import pytest
import requests

from conftest import ROOT, WORLD, Api, Server

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
        owner = Api.signup(server.url, "owner")
        course = owner.course()
        lecture = owner.lecture(course["id"], "Before the outages")
        owner.upload(lecture["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
        owner.wait_lecture(lecture["id"])
        master = owner.playback(lecture["id"])["url"]
        media = requests.get(server.url + master, timeout=10).text
        rung = [line for line in media.splitlines() if line and not line.startswith("#")][0]
        playlist = requests.get(server.url + master.rsplit("/", 1)[0] + "/" + rung, timeout=10).text
        segment = [line for line in playlist.splitlines() if line and not line.startswith("#")][0]
        segment_url = server.url + master.rsplit("/", 1)[0] + "/" + rung.rsplit("/", 1)[0] + "/" + segment
        assert requests.get(segment_url, timeout=10).status_code == 200
        load = Load([("api", f"{server.url}/api/courses/{course['id']}"), ("segment", segment_url)], owner.headers())
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
        back = time.time()
        done, _ = owner.wait_lecture(during["id"], timeout=180)
        assert done["status"] == "ready", done
        measured["rabbitmq"] = {"requests_during": len(answered), "all_answered_200": True,
                                "upload_ready_after_s": round(time.time() - back, 1)}
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
        print("measured:", measured)
    finally:
        if load:
            load.close()
        for backend in ("postgres", "seaweedfs", "rabbitmq"):
            services(f"start-{backend}")
        server.stop()
