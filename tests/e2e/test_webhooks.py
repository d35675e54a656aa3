"""Webhooks: owners' endpoints get their events POSTed, signed per Standard Webhooks and
checked here with the `standardwebhooks` library (a third-party verifier); a receiver
that answers 500 sees retries, one that keeps failing is disabled with a notice; the
log shows each delivery and resends it; a rotated secret overlaps the old one; and no
delivery goes to a private address unless the operator allows it."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

from conftest import Api, Server

FAST = {"LECTERN_WEBHOOK_RETRY_SECS": "1,1,1"}
ALLOW = {"LECTERN_WEBHOOK_ALLOW_PRIVATE": "true"}


class Receiver:
    """A webhook receiver on loopback: it keeps every request, and answers with the
    statuses queued in `answers` (then 200)."""

    def __init__(self):
        self.requests, self.answers = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = outer.answers.pop(0) if outer.answers else 200
                outer.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode(), "status": status})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"thanks" if status == 200 else b"receiver broken")

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/hooks/lectern"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def wait(self, predicate, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self.requests):
                return self.requests
            time.sleep(0.2)
        raise AssertionError(f"the receiver never saw it: {[(r['status'], json.loads(r['body'])['type']) for r in self.requests]}")

    def types(self, status=200):
        return [json.loads(r["body"])["type"] for r in self.requests if r["status"] == status]


def verified(request, *secrets):
    """The payload, if every given secret verifies the request (the library raises
    otherwise)."""
    for secret in secrets:
        payload = Webhook(secret).verify(request["body"], request["headers"])
    return payload


def register(owner, url, types):
    return owner.ok(owner.post("/api/webhooks", json={"url": url, "event_types": types, "description": "LMS sync"}), 201)


def test_events_arrive_signed_retried_logged_and_resent(tmp_path, lectern_bin, samples):
    server = Server(tmp_path / "data", env={**ALLOW, **FAST}).start()
    receiver = Receiver()
    try:
        owner = Api.signup(server.url, "owner")
        endpoint = register(owner, receiver.url, ["upload.completed", "lecture.ready", "enrollment.created"])
        assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"]
        assert "secret" not in owner.ok(owner.get(f"/api/webhooks/{endpoint['id']}"))
        course = owner.course()
        lecture = owner.lecture(course["id"])
        receiver.answers = [500, 500]  # the first delivery fails twice, then goes through
        owner.upload(lecture["id"], samples / "good/screencast_webcam_h264_aac_720p.mp4")
        owner.wait_lecture(lecture["id"])
        student = Api.signup(server.url, "student")
        student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)
        receiver.wait(lambda rs: {"upload.completed", "lecture.ready", "enrollment.created"} <= set(receiver.types()))

        for r in receiver.requests:
            payload = verified(r, endpoint["secret"])
            assert r["headers"]["webhook-id"].startswith("msg_")
        first = receiver.requests[0]
        assert first["status"] == 500 and json.loads(first["body"])["type"] == "upload.completed"
        retried = [r for r in receiver.requests if r["headers"]["webhook-id"] == first["headers"]["webhook-id"]]
        assert [r["status"] for r in retried] == [500, 500, 200], "one webhook-id, retried until it went through"
        ready = [verified(r, endpoint["secret"]) for r in receiver.requests if json.loads(r["body"])["type"] == "lecture.ready"][0]
        assert ready["data"]["lecture_id"] == lecture["id"] and ready["data"]["duration_secs"] > 0 and ready["timestamp"].endswith("Z")
        enrolled = [verified(r, endpoint["secret"]) for r in receiver.requests if json.loads(r["body"])["type"] == "enrollment.created"][0]
        assert enrolled["data"] == {**enrolled["data"], "course_id": course["id"], "user_id": student.user["id"], "kind": "subscription"}
        assert "lecture.failed" not in receiver.types() and "progress" not in str(receiver.types())

        log = owner.ok(owner.get(f"/api/webhooks/{endpoint['id']}/deliveries"))["deliveries"]
        upload = [d for d in log if d["event_type"] == "upload.completed"][0]
        assert upload["state"] == "delivered" and upload["attempts"] == 3 and upload["last_status"] == 200
        assert upload["last_response"] == "thanks" and upload["last_latency_ms"] >= 0 and upload["id"] == first["headers"]["webhook-id"]

        # Resend: the same delivery again, once, on the owner's word.
        before = len(receiver.requests)
        owner.ok(owner.post(f"/api/webhooks/{endpoint['id']}/deliveries/{upload['id']}/resend"), 202)
        receiver.wait(lambda rs: len(rs) > before)
        assert receiver.requests[-1]["headers"]["webhook-id"] == upload["id"]

        # Rotation: for a day deliveries verify with the new secret and the old one.
        rotated = owner.ok(owner.post(f"/api/webhooks/{endpoint['id']}/rotate"))
        assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_until"] > time.time()
        other = Api.signup(server.url, "student")
        other.ok(other.post(f"/api/courses/{course['id']}/enroll"), 201)
        last = receiver.wait(lambda rs: len([r for r in rs if r["status"] == 200 and json.loads(r["body"])["type"] == "enrollment.created"]) == 2)[-1]
        assert len(last["headers"]["webhook-signature"].split(" ")) == 2
        verified(last, rotated["secret"], endpoint["secret"])
        try:
            Webhook("whsec_" + "A" * 43 + "=").verify(last["body"], last["headers"])
            raise AssertionError("a stranger's secret verified a delivery")
        except Exception as e:
            assert "AssertionError" not in type(e).__name__
    finally:
        receiver.http.shutdown()
        server.stop()


def test_an_endpoint_that_keeps_failing_is_disabled_with_a_notice(tmp_path, lectern_bin):
    server = Server(tmp_path / "data", env={**ALLOW, **FAST}).start()
    receiver = Receiver()
    try:
        owner = Api.signup(server.url, "owner")
        endpoint = register(owner, receiver.url, ["enrollment.created"])
        course = owner.course()
        receiver.answers = [500] * 10
        Api.signup(server.url, "student").post(f"/api/courses/{course['id']}/enroll")
        deadline = time.time() + 30
        while owner.ok(owner.get(f"/api/webhooks/{endpoint['id']}"))["enabled"] and time.time() < deadline:
            time.sleep(0.3)
        now = owner.ok(owner.get(f"/api/webhooks/{endpoint['id']}"))
        assert not now["enabled"] and "failed 4 times" in now["disabled_reason"]
        assert [r["status"] for r in receiver.requests] == [500] * 4
        log = owner.ok(owner.get(f"/api/webhooks/{endpoint['id']}/deliveries"))["deliveries"]
        assert [(d["state"], d["attempts"], d["last_status"], d["last_response"]) for d in log] == [("failed", 4, 500, "receiver broken")]
        notices = [e for e in owner.ok(owner.get("/api/events"))["events"] if e["type"] == "webhook_disabled"]
        assert notices and notices[0]["endpoint_id"] == endpoint["id"]
        # Nothing more goes out while it is off; enabled again, a resend goes through.
        r = owner.post(f"/api/webhooks/{endpoint['id']}/deliveries/{log[0]['id']}/resend")
        assert r.status_code == 409
        owner.ok(owner.patch(f"/api/webhooks/{endpoint['id']}", json={"enabled": True}))
        receiver.answers = []
        owner.ok(owner.post(f"/api/webhooks/{endpoint['id']}/deliveries/{log[0]['id']}/resend"), 202)
        receiver.wait(lambda rs: rs[-1]["status"] == 200)
        verified(receiver.requests[-1], endpoint["secret"])
    finally:
        receiver.http.shutdown()
        server.stop()


def test_private_addresses_get_nothing_unless_the_operator_allows_them(tmp_path, lectern_bin):
    receiver = Receiver()
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        owner = Api.signup(server.url, "owner")
        for url in [receiver.url, "http://localhost:9/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data",
                    "http://10.0.0.8/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x"]:
            r = owner.post("/api/webhooks", json={"url": url, "event_types": ["lecture.ready"]})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid", (url, r.text)
            assert "public addresses only" in r.json()["error"]["message"]
        for url in ["ftp://example.org/x", "https://user:pw@example.org/x", "nonsense"]:
            assert owner.post("/api/webhooks", json={"url": url, "event_types": ["lecture.ready"]}).status_code == 400
        assert owner.post("/api/webhooks", json={"url": "https://example.org/x", "event_types": []}).status_code == 400
        assert owner.post("/api/webhooks", json={"url": "https://example.org/x", "event_types": ["lecture.exploded"]}).status_code in (400, 422)
        student = Api.signup(server.url, "student")
        assert student.post("/api/webhooks", json={"url": "https://example.org/x", "event_types": ["lecture.ready"]}).status_code == 403
        server.stop()

        # Allowed, an endpoint on loopback is taken; once the operator takes the
        # permission back, deliveries to it are refused at the address, not sent.
        allowed = Server(data, env={**ALLOW, **FAST}).start()
        owner = Api(allowed.url, owner.token)
        endpoint = register(owner, receiver.url, ["enrollment.created"])
        course = owner.course()
        Api.signup(allowed.url, "student").post(f"/api/courses/{course['id']}/enroll")
        receiver.wait(lambda rs: len(rs) == 1)
        allowed.stop()
        server = Server(data, env=FAST).start()
        Api.signup(server.url, "student").post(f"/api/courses/{course['id']}/enroll")
        time.sleep(5)
        assert len(receiver.requests) == 1, "nothing reached the private address"
        log = Api(server.url, owner.token).ok(Api(server.url, owner.token).get(f"/api/webhooks/{endpoint['id']}/deliveries"))["deliveries"]
        refused = [d for d in log if d["last_status"] is None]
        assert refused and "public addresses only" in refused[0]["last_error"], log
    finally:
        receiver.http.shutdown()
        server.stop()
