"""Error tracking: with SENTRY_DSN set, a panic forced by an admin (POST
/api/admin/sentry-check) reaches a Sentry-protocol receiver on loopback, tagged with the
request's X-Request-Id and the role, and Lectern keeps serving.

The receiver speaks Sentry's ingestion protocol: POST /api/<project>/envelope/ with an
X-Sentry-Auth header, the body an envelope (gzip-compressed or not). The code path (the
edge, the panic hook, the transport) does not depend on the world's backends; the test
runs in either."""
import gzip
import json
import os
import subprocess
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import BIN, Api, Server


def parse_envelope(body: bytes):
    """The items of a Sentry envelope: (item header, payload bytes) pairs."""
    lines = body.split(b"\n", 1)
    rest = lines[1] if len(lines) > 1 else b""
    items = []
    while rest.strip():
        head, _, rest = rest.partition(b"\n")
        if not head.strip():
            continue
        header = json.loads(head)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"]:]
            rest = rest[1:] if rest.startswith(b"\n") else rest
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return json.loads(lines[0]), items


class SentryReceiver:
    """A loopback server that takes envelopes as Sentry's ingestion endpoint does."""

    def __init__(self):
        self.events, self.auth, self.paths = [], [], []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if not self.path.rstrip("/").endswith("/envelope") or "X-Sentry-Auth" not in self.headers:
                    self.send_response(400)
                    self.end_headers()
                    return
                _, items = parse_envelope(body)
                with receiver.arrived:
                    receiver.paths.append(self.path)
                    receiver.auth.append(self.headers["X-Sentry-Auth"])
                    receiver.events += [json.loads(p) for h, p in items if h.get("type") == "event"]
                    receiver.arrived.notify_all()
                reply = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, match, timeout=15):
        deadline = time.time() + timeout
        with self.arrived:
            while True:
                found = [e for e in self.events if match(e)]
                if found or time.time() > deadline:
                    return found
                self.arrived.wait(max(0.0, deadline - time.time()))


def make_admin(server):
    email = f"root-{os.urandom(4).hex()}@example.org"
    out = subprocess.run(
        [str(BIN), "user", "create", "--email", email, "--name", "Root", "--role", "admin"],
        env={**server.env, "LECTERN_NEW_PASSWORD": "admin password 1"}, capture_output=True, text=True, check=True,
    )
    assert '"role":"admin"' in out.stdout
    r = requests.post(server.url + "/api/auth/login", json={"email": email, "password": "admin password 1"})
    assert r.status_code == 200, r.text
    return Api(server.url, r.json()["token"])


CHECK = "/api/admin/sentry-check"


@pytest.fixture
def receiver():
    with SentryReceiver() as r:
        yield r


def test_a_forced_panic_reaches_the_receiver_with_its_request_id_and_role(tmp_path, lectern_bin, receiver):
    server = Server(tmp_path / "data", env={
        "SENTRY_DSN": f"http://public@127.0.0.1:{receiver.port}/1",
        "SENTRY_ENVIRONMENT": "e2e",
    }).start()
    try:
        admin = make_admin(server)
        owner = Api.signup(server.url, "owner")
        # Only admins may force it: no token 401, anyone else 403, and nothing is reported.
        assert requests.post(server.url + CHECK).status_code == 401
        assert owner.post(CHECK).status_code == 403
        request_id = "sentry-check-" + os.urandom(6).hex()
        started = time.time()
        r = admin.post(CHECK, headers={"X-Request-Id": request_id})
        print(f"the panicking request took {time.time() - started:.2f} s")
        # The edge answers the panic with the API's JSON 500; no detail leaks.
        assert r.status_code == 500, r.text
        assert r.json()["error"]["code"] == "internal"
        assert "sentry-check" not in r.text
        assert r.headers["x-request-id"] == request_id
        events = receiver.wait_for(lambda e: e.get("tags", {}).get("request_id") == request_id)
        assert events, f"no event for {request_id}; got {receiver.events}"
        print(f"event arrived {time.time() - started:.2f} s after the request")
        event = events[0]
        assert event["tags"]["role"] == "serve"
        assert event["level"] == "fatal"
        exception = event["exception"]["values"][0]
        assert exception["type"] == "panic"
        assert "a panic forced by an admin" in exception["value"]
        assert event["transaction"] == "POST /api/admin/sentry-check"
        assert event["release"].startswith("lectern@")
        assert event["environment"] == "e2e"
        assert receiver.paths[0] == "/api/1/envelope/"
        assert "sentry_key=public" in receiver.auth[0]
        # One report for the panic: the 500 it turned into is not reported again.
        time.sleep(0.5)
        assert len(receiver.wait_for(lambda e: e.get("tags", {}).get("request_id") == request_id, timeout=0)) == 1
        # The process survived and keeps serving.
        assert server.proc.poll() is None
        assert requests.get(server.url + "/healthz").status_code == 200
        assert admin.get("/api/me").status_code == 200
        assert "request handler panicked" in server.log_path.read_text()
    finally:
        server.stop()


def test_the_check_says_so_when_error_tracking_is_off(server):
    admin = make_admin(server)
    r = admin.post(CHECK)
    assert r.status_code == 409
    assert "SENTRY_DSN" in r.json()["error"]["message"]
    assert "panicked" not in server.log_path.read_text()
