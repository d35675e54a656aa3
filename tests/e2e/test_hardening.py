"""Abuse limits and HTTP hygiene against the real server: rate limits per IP and per
account (429 + Retry-After), sign-in slow-down after failures, body limits, upload
quotas, request ids in responses and logs, CORS, compressed JSON, the time limit that
spares upload bodies, and error bodies that never leak internals."""
import base64
import gzip
import json
import os
import re
import socket
import time

import pytest
import requests

from conftest import Api, Server

TUS = {"Tus-Resumable": "1.0.0"}


def meta(**kv):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def upload_headers(lecture_id, length, filename="a.mp4"):
    return {**TUS, "Upload-Length": str(length), "Upload-Metadata": meta(lecture_id=lecture_id, filename=filename)}


def create_upload(api, lecture_id, length, filename="a.mp4"):
    return api.post("/api/uploads", headers=upload_headers(lecture_id, length, filename))


def open_patch(server, api, path, length, body):
    """A raw connection that sent a PATCH head announcing `length` bytes and `body`;
    the caller sends (or withholds) the rest."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def refused(r, status, code):
    assert r.status_code == status, f"{r.status_code} {r.text}"
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body["error"]["message"]


@pytest.fixture
def limited(tmp_path, lectern_bin):
    """A server with small limits; client addresses from X-Forwarded-For so one test
    machine can be several clients."""
    env = {
        "LECTERN_RATE_LIMITS": "signup.ip=3/60,login.ip=100/60,login.account=100/60,login.failures=3,"
        "upload.ip=100/60,upload.account=2/60,playback.ip=3/60,playback.account=4/60",
        "LECTERN_TRUST_FORWARDED": "true",
    }
    s = Server(tmp_path / "data", env=env).start()
    yield s
    s.stop()


def from_ip(ip, extra=None):
    h = {"X-Forwarded-For": f"203.0.113.50, {ip}"}
    h.update(extra or {})
    return h


def signup(server, ip, role="owner"):
    email = f"{role}-{os.urandom(5).hex()}@example.org"
    return requests.post(server.url + "/api/auth/signup", headers=from_ip(ip),
                         json={"email": email, "password": "correct horse 1", "name": "N", "role": role})


def test_signups_per_address_are_limited_with_retry_after(limited):
    for _ in range(3):
        assert signup(limited, "198.51.100.1").status_code == 201
    r = signup(limited, "198.51.100.1")
    message = refused(r, 429, "rate_limited")
    assert "sign-ups" in message
    assert 1 <= int(r.headers["Retry-After"]) <= 20
    # Another address is a different client.
    assert signup(limited, "198.51.100.2").status_code == 201


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_RATE_LIMITS": "signup.ip=2/60"}).start()
    try:
        codes = [signup(s, f"198.51.100.{i}").status_code for i in range(4)]
        # Spoofed X-Forwarded-For changes nothing: every request is the loopback client.
        assert codes == [201, 201, 429, 429], codes
    finally:
        s.stop()


def test_playback_tokens_are_limited_per_address_and_per_account(limited):
    user = Api(limited.url, signup(limited, "198.51.100.9", role="student").json()["token"])

    def issue(ip):
        return requests.post(limited.url + "/api/lectures/nope/playback", headers=from_ip(ip, user.headers()))

    assert [issue("192.0.2.1").status_code for _ in range(3)] == [404, 404, 404]
    refused(issue("192.0.2.1"), 429, "rate_limited")
    # The account has one more in its budget of four, from another address.
    assert issue("192.0.2.2").status_code == 404
    message = refused(issue("192.0.2.3"), 429, "rate_limited")
    assert "playback" in message


def test_upload_creation_is_limited_per_account(limited):
    owner = Api(limited.url, signup(limited, "198.51.100.20").json()["token"])
    course = owner.ok(owner.post("/api/courses", json={"title": "C"}), 201)
    lecture = owner.ok(owner.post(f"/api/courses/{course['id']}/lectures", json={"title": "L"}), 201)

    def create(ip):
        h = from_ip(ip, owner.headers(upload_headers(lecture["id"], 100)))
        return requests.post(limited.url + "/api/uploads", headers=h)

    assert create("192.0.2.10").status_code == 201
    assert create("192.0.2.11").status_code == 201
    r = create("192.0.2.12")
    assert "new uploads" in refused(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["Tus-Resumable"] == "1.0.0"


def test_sign_in_slows_down_after_repeated_failures(limited):
    r = signup(limited, "198.51.100.30", role="student")
    email = json.loads(r.request.body)["email"]

    def login(password, ip="192.0.2.30"):
        return requests.post(limited.url + "/api/auth/login", headers=from_ip(ip), json={"email": email, "password": password})

    for _ in range(3):
        refused(login("wrong password"), 401, "bad_credentials")
    # Now even the right password waits: a guesser learns nothing while locked.
    r = login("correct horse 1")
    assert "failed sign-ins" in refused(r, 429, "rate_limited")
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 2
    # Another address is not locked out by this one's failures.
    assert login("correct horse 1", ip="192.0.2.31").status_code == 200
    time.sleep(wait + 0.2)
    refused(login("wrong again"), 401, "bad_credentials")
    r = login("correct horse 1")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, "each further failure waits longer"
    time.sleep(int(r.headers["Retry-After"]) + 0.2)
    assert login("correct horse 1").status_code == 200
    # Success forgets the failures.
    refused(login("wrong"), 401, "bad_credentials")
    assert login("correct horse 1").status_code == 200


def test_bodies_over_the_route_limit_are_refused(server):
    owner = Api.signup(server.url, "owner")
    r = owner.post("/api/courses", data=json.dumps({"title": "T", "description": "x" * 300_000}),
                   headers={"Content-Type": "application/json"})
    refused(r, 413, "payload_too_large")
    refused(requests.post(server.url + "/api/auth/login", data=b"{" + b" " * 2_000_000 + b"}",
                          headers={"Content-Type": "application/json"}), 413, "payload_too_large")
    # Within the limit, a description of 20000 characters is fine, and JSON must be an object.
    assert owner.post("/api/courses", json={"title": "T", "description": "x" * 20_000}).status_code == 201
    refused(owner.post("/api/courses", json=["T", "", "", 0, True]), 400, "invalid")


def test_upload_quota_per_owner(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_UPLOAD_QUOTA_BYTES": "1000000"}).start()
    try:
        owner = Api.signup(s.url, "owner")
        course = owner.course()
        lectures = [owner.lecture(course["id"], f"L{i}") for i in range(2)]

        def create(lecture, length):
            return create_upload(owner, lecture["id"], length)

        first = create(lectures[0], 600_000)
        assert first.status_code == 201
        message = refused(create(lectures[1], 600_000), 413, "quota_exceeded")
        assert "600000 of 1000000" in message
        # Another owner has a quota of their own.
        other = Api.signup(s.url, "owner")
        other_lecture = other.lecture(other.course()["id"])
        assert create_upload(other, other_lecture["id"], 900_000, "b.mp4").status_code == 201
        # Giving the upload up frees its share.
        assert owner.delete(first.headers["Location"], headers=TUS).status_code == 204
        assert create(lectures[1], 600_000).status_code == 201
        # Deleting the lecture does not: the upload was made, and its work with it.
        assert owner.delete(f"/api/lectures/{lectures[1]['id']}").status_code == 204
        refused(create(lectures[0], 600_000), 413, "quota_exceeded")
        # Many uploads at once cannot slip past the quota together.
        third = other.lecture(other.course()["id"])
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: create_upload(other, third["id"], 40_000, "c.mp4").status_code, range(8)))
        assert codes.count(201) == 2 and codes.count(413) == 6, codes
    finally:
        s.stop()


def test_a_huge_email_costs_the_sender_its_own_rate_only(limited):
    email = "x" * (100 * 1024) + "@example.org"
    r = requests.post(limited.url + "/api/auth/login", headers=from_ip("192.0.2.60"), json={"email": email, "password": "p"})
    refused(r, 401, "bad_credentials")
    # The log and the limiter kept nothing of it.
    assert email[:4096] not in limited.log_path.read_text()


def test_guessing_from_everywhere_does_not_lock_the_owner_out(limited):
    r = signup(limited, "198.51.100.40", role="student")
    email = json.loads(r.request.body)["email"]

    def login(password, ip):
        return requests.post(limited.url + "/api/auth/login", headers=from_ip(ip), json={"email": email, "password": password})

    # 60 wrong passwords from 20 addresses: past the account's ceiling.
    for i in range(60):
        login("wrong password", f"192.0.2.{100 + i % 20}")
    # An address that has not failed signs in at once…
    assert login("correct horse 1", "192.0.2.250").status_code == 200
    # …and one that failed once now waits, where it had free tries before.
    refused(login("wrong", "192.0.2.251"), 401, "bad_credentials")
    assert login("correct horse 1", "192.0.2.251").status_code == 429


def test_ipv6_clients_are_one_client_per_64(limited):
    codes = [signup(limited, f"2001:db8:77:1::{i:x}").status_code for i in range(1, 5)]
    assert codes == [201, 201, 201, 429], codes
    assert signup(limited, "2001:db8:77:2::1").status_code == 201


def test_every_response_has_a_request_id_and_refusals_are_logged_with_it(server):
    r = requests.get(server.url + "/api/courses")
    generated = r.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", generated)
    r = requests.get(server.url + "/api/courses", headers={"X-Request-Id": "trace-abc.123"})
    assert r.headers["X-Request-Id"] == "trace-abc.123"
    # An id that is not safe to log is replaced.
    r = requests.get(server.url + "/healthz", headers={"X-Request-Id": "x\" injected=1 " + "y" * 100})
    assert r.headers["X-Request-Id"] != "x\" injected=1 " + "y" * 100
    # A refused request: the log has its id, the code and the reason; the token in the
    # playback path does not reach the log.
    r = requests.get(server.url + "/play/forged.token.value/master.m3u8", headers={"X-Request-Id": "refused-req-1"})
    refused(r, 403, "bad_playback_token")
    time.sleep(0.3)
    log = server.log_path.read_text()
    line = next((l for l in log.splitlines() if "refused-req-1" in l and "request refused" in l), None)
    assert line and "bad_playback_token" in line, log[-2000:]
    assert "forged.token.value" not in log


def test_cors_only_for_configured_origins_and_play_open_to_all(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_CORS_ORIGINS": "https://lms.example.edu"}).start()
    try:
        good, bad = "https://lms.example.edu", "https://evil.example"
        pre = requests.options(s.url + "/api/courses", headers={"Origin": good, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code in (200, 204) and pre.headers["Access-Control-Allow-Origin"] == good
        assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
        r = requests.get(s.url + "/api/courses", headers={"Origin": good})
        assert r.headers["Access-Control-Allow-Origin"] == good and "x-request-id" in r.headers["Access-Control-Expose-Headers"].lower()
        pre = requests.options(s.url + "/api/courses", headers={"Origin": bad, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in pre.headers
        assert "Access-Control-Allow-Origin" not in requests.get(s.url + "/api/courses", headers={"Origin": bad}).headers
        # tus preflight for an allowed origin lists the tus headers.
        pre = requests.options(s.url + "/api/uploads", headers={"Origin": good, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "tus-resumable,upload-length"})
        assert "upload-length" in pre.headers["Access-Control-Allow-Headers"].lower()
        # Playback stays readable from anywhere: the signed URL is the credential.
        pre = requests.options(s.url + "/play/x/master.m3u8", headers={"Origin": bad, "Access-Control-Request-Method": "GET"})
        assert pre.status_code in (200, 204)
        assert requests.get(s.url + "/play/x/master.m3u8", headers={"Origin": bad}).headers["Access-Control-Allow-Origin"] == "*"
    finally:
        s.stop()


def test_json_is_compressed_for_clients_that_ask(server):
    owner = Api.signup(server.url, "owner")
    for i in range(5):
        owner.course(title=f"Course {i}", description="A long description. " * 40)
    r = requests.get(server.url + "/api/courses?mine=true", headers={**owner.headers(), "Accept-Encoding": "gzip"}, stream=True)
    assert r.headers.get("Content-Encoding") == "gzip"
    raw = r.raw.read()
    assert len(json.loads(gzip.decompress(raw))["items"]) == 5
    plain = requests.get(server.url + "/api/courses?mine=true", headers={**owner.headers(), "Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and len(raw) < len(plain.content) / 3


def test_the_request_time_limit_spares_slow_upload_bodies(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_REQUEST_TIMEOUT_SECS": "1"}).start()
    try:
        owner = Api.signup(s.url, "owner")
        lecture = owner.lecture(owner.course()["id"])
        path = create_upload(owner, lecture["id"], 30_000, "a.bin").headers["Location"]
        # A PATCH whose body trickles in over 3 s (three times the limit) still lands.
        with open_patch(s, owner, path, 3000, b"") as sock:
            for _ in range(3):
                sock.sendall(b"z" * 1000)
                time.sleep(1)
            reply = sock.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 204"), reply
        assert "upload-offset: 3000" in reply.lower()
    finally:
        s.stop()


def test_a_client_that_does_not_send_a_request_head_in_time_is_cut_off(tmp_path, lectern_bin):
    """Slowloris: half a request head, or a kept-alive connection left idle, is closed
    once LECTERN_HEADER_TIMEOUT_SECS passes. A body (an upload) and a WebSocket, both
    past their heads, are not timed by it."""
    from websockets.sync.client import connect

    s = Server(tmp_path / "data", env={"LECTERN_HEADER_TIMEOUT_SECS": "2"}).start()
    try:
        owner = Api.signup(s.url, "owner")
        lecture = owner.lecture(owner.course()["id"])
        path = create_upload(owner, lecture["id"], 30_000, "a.bin").headers["Location"]
        partial = socket.create_connection(("127.0.0.1", s.port))
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        idle = socket.create_connection(("127.0.0.1", s.port))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        with connect(s.url.replace("http://", "ws://") + f"/api/events?token={owner.token}") as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            started = time.time()
            # A PATCH whose body trickles in over 4 s, twice the limit, still lands.
            with open_patch(s, owner, path, 4000, b"") as sock:
                for _ in range(4):
                    sock.sendall(b"z" * 1000)
                    time.sleep(1)
                reply = sock.recv(4096).decode()
            assert reply.startswith("HTTP/1.1 204") and "upload-offset: 4000" in reply.lower(), reply
            for sock in (partial, idle):
                sock.settimeout(5)
                try:
                    assert sock.recv(4096) == b""
                except ConnectionResetError:
                    pass
                sock.close()
            assert time.time() - started < 10
            # The WebSocket, idle as long, still answers a ping.
            assert ws.ping().wait(5)
        assert requests.get(s.url + "/healthz").status_code == 200
    finally:
        s.stop()


def test_a_stalled_upload_body_is_cut_keeping_its_bytes_and_the_client_resumes(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_UPLOAD_IDLE_SECS": "1"}).start()
    try:
        owner = Api.signup(s.url, "owner")
        lecture = owner.lecture(owner.course()["id"])
        path = create_upload(owner, lecture["id"], 5000, "a.bin").headers["Location"]
        # A client that sends 2000 of 5000 announced bytes and then goes silent, its
        # connection left open (a dropped mobile link looks like this).
        sock = open_patch(s, owner, path, 5000, b"a" * 2000)
        deadline = time.time() + 10
        while time.time() < deadline:
            offset = int(requests.head(s.url + path, headers=owner.headers(TUS)).headers["Upload-Offset"])
            if offset == 2000:
                break
            time.sleep(0.2)
        assert offset == 2000, offset
        # The upload is free again: the client resumes from another connection.
        r = owner.patch(path, data=b"b" * 3000, headers={**TUS, "Upload-Offset": "2000", "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204 and r.headers["Upload-Offset"] == "5000", r.text
        sock.close()
    finally:
        s.stop()


def test_refusals_say_why_and_leak_no_internals(server):
    owner = Api.signup(server.url, "owner")
    lecture = owner.lecture(owner.course()["id"])
    probes = [
        requests.get(server.url + "/api/nope"),
        requests.delete(server.url + "/healthz"),
        requests.get(server.url + "/api/me", headers={"Authorization": "Bearer not.a.token"}),
        owner.post("/api/courses", data="{not json", headers={"Content-Type": "application/json"}),
        owner.post("/api/courses", data="title=x", headers={"Content-Type": "application/x-www-form-urlencoded"}),
        owner.get("/api/courses?page=abc"),
        owner.get("/api/events?after=abc"),
        owner.post(f"/api/lectures/{lecture['id']}/playback"),
        owner.patch("/api/uploads/../../etc/passwd", headers=TUS),
        owner.post("/api/uploads", headers={**TUS, "Upload-Length": "-1"}),
        owner.post("/api/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "lecture_id !!!notbase64"}),
        requests.get(server.url + "/play/a/..%2f..%2fkeys/access.key"),
        requests.get(server.url + "/media/posters/..%2fkeys.jpg"),
    ]
    data_dir = str(server.data_dir)
    for r in probes:
        assert 400 <= r.status_code < 500, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
        body = r.json()
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], r.text
        for leak in (data_dir, "/src/", ".rs:", "panicked", "stack backtrace", "sqlx", "gstreamer"):
            assert leak not in r.text, f"{r.request.url} leaks {leak!r}: {r.text}"
        assert r.headers.get("X-Request-Id")


def lectern_cli(server, *args):
    """`lectern ARGS…` on the server's data folder and backends; its JSON lines."""
    import subprocess
    from conftest import BIN
    out = subprocess.run([str(BIN), *args], env=server.env, capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def owner_signup(server, invite=None):
    email = f"teacher-{os.urandom(5).hex()}@example.org"
    body = {"email": email, "password": "correct horse 1", "name": "T", "role": "owner"}
    if invite is not None:
        body["invite"] = invite
    return requests.post(server.url + "/api/auth/signup", json=body)


def test_owners_sign_up_with_an_invite_code_used_once(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_OWNER_SIGNUP": "invite"}).start()
    try:
        assert "invite code" in refused(owner_signup(s), 403, "forbidden")
        refused(owner_signup(s, "not-a-code"), 403, "forbidden")
        # Students need no code.
        assert signup(s, "198.51.100.70", role="student").json()["user"]["role"] == "student"
        (made,) = lectern_cli(s, "user", "invite", "--days", "1")
        r = owner_signup(s, made["invite"])
        assert r.status_code == 201 and r.json()["user"]["role"] == "owner", r.text
        refused(owner_signup(s, made["invite"]), 403, "forbidden")
        # A code whose sign-up failed (the email was taken) is not used up.
        (again,) = lectern_cli(s, "user", "invite")
        taken = json.loads(r.request.body)["email"]
        conflict = requests.post(s.url + "/api/auth/signup", json={"email": taken, "password": "correct horse 1", "name": "T",
                                                                   "role": "owner", "invite": again["invite"]})
        assert conflict.status_code == 409
        assert owner_signup(s, again["invite"]).status_code == 201
    finally:
        s.stop()


def test_owners_wait_for_an_admin_where_owners_are_approved(tmp_path, lectern_bin):
    s = Server(tmp_path / "data", env={"LECTERN_OWNER_SIGNUP": "approval"}).start()
    try:
        r = owner_signup(s)
        assert r.status_code == 201, r.text
        session = r.json()
        assert session["user"]["role"] == "student" and session["owner_request_pending"] is True
        student = Api(s.url, session["token"])
        refused(student.post("/api/courses", json={"title": "Too early"}), 403, "forbidden")
        email = session["user"]["email"]
        assert [p["email"] for p in lectern_cli(s, "user", "pending")] == [email]
        (approved,) = lectern_cli(s, "user", "approve", email)
        assert approved["role"] == "owner"
        assert lectern_cli(s, "user", "pending") == []
        login = requests.post(s.url + "/api/auth/login", json={"email": email, "password": "correct horse 1"}).json()
        owner = Api(s.url, login["token"])
        assert login["user"]["role"] == "owner"
        assert owner.post("/api/courses", json={"title": "Now"}).status_code == 201
    finally:
        s.stop()
