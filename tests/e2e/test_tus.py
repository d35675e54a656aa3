"""The tus 1.0 upload protocol at /api/uploads: core, creation, creation-with-upload,
checksum, termination and expiration, with real clients and raw requests."""
import base64
import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import requests

from conftest import Api, Server

TUS = {"Tus-Resumable": "1.0.0"}


def meta(**kv):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def create(api, lecture_id, length, **extra):
    headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": meta(lecture_id=lecture_id, filename="x.mp4")}
    headers.update(extra.pop("headers", {}))
    return api.post("/api/uploads", headers=headers, **extra)


def location(r):
    loc = r.headers["Location"]
    return urlparse(loc).path if loc.startswith("http") else loc


def patch(api, path, offset, data, **headers):
    h = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **headers}
    return api.patch(path, headers=h, data=data)


def offset_of(api, path):
    r = requests.head(api.base + path, headers={**TUS, **api.headers()})
    assert r.status_code == 200, r.status_code
    assert r.headers["Cache-Control"] == "no-store"
    return int(r.headers["Upload-Offset"])


def setup(server):
    owner = Api.signup(server.url, "owner")
    course = owner.course()
    return owner, owner.lecture(course["id"])


def test_options_advertises_the_protocol(server):
    r = requests.options(server.url + "/api/uploads")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "creation-with-upload", "checksum", "termination", "expiration"}
    assert set(r.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}
    assert int(r.headers["Tus-Max-Size"]) > 0


def test_core_protocol_rules(server):
    owner, lecture = setup(server)
    data = os.urandom(300_000)
    r = create(owner, lecture["id"], len(data))
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in r.headers
    path = location(r)
    assert offset_of(owner, path) == 0
    # Wrong offset: 409, nothing written.
    assert patch(owner, path, 5, data[:10]).status_code == 409
    # Wrong content type: 415.
    r = owner.patch(path, headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"}, data=data[:10])
    assert r.status_code == 415
    # No Tus-Resumable: 412 with the version we speak.
    r = owner.patch(path, headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, data=data[:10])
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    r = patch(owner, path, 0, data[:100_000])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "100000"
    head = requests.head(server.url + path, headers={**TUS, **owner.headers()})
    assert head.headers["Upload-Length"] == str(len(data))
    assert "lecture_id" in head.headers["Upload-Metadata"]
    # A chunk past Upload-Length is refused whole.
    assert patch(owner, path, 100_000, data[100_000:] + b"extra").status_code == 413
    assert offset_of(owner, path) == 100_000
    # Someone else cannot see or touch it.
    stranger = Api.signup(server.url, "owner")
    assert requests.head(server.url + path, headers={**TUS, **stranger.headers()}).status_code == 404
    assert patch(stranger, path, 100_000, data[100_000:]).status_code == 404


def test_creation_rules(server):
    owner, lecture = setup(server)
    student = Api.signup(server.url, "student")
    assert create(student, lecture["id"], 10).status_code == 403
    other = Api.signup(server.url, "owner")
    assert create(other, lecture["id"], 10).status_code == 403
    assert create(owner, "no-such-lecture", 10).status_code == 404
    r = owner.post("/api/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": meta(filename="x.mp4")})
    assert r.status_code == 400 and "lecture_id" in r.json()["error"]["message"]
    r = owner.post("/api/uploads", headers={**TUS, "Upload-Metadata": meta(lecture_id=lecture["id"], filename="x")})
    assert r.status_code == 400
    r = owner.post("/api/uploads", headers={**TUS, "Upload-Length": "-4", "Upload-Metadata": meta(lecture_id=lecture["id"], filename="x")})
    assert r.status_code == 400
    r = owner.post("/api/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "lecture_id !!notbase64"})
    assert r.status_code == 400
    assert requests.post(server.url + "/api/uploads", headers={**TUS, "Upload-Length": "10"}).status_code == 401


def test_max_size_is_enforced(tmp_path, lectern_bin):
    server = Server(tmp_path / "data", env={"LECTERN_MAX_UPLOAD_BYTES": "1000"}).start()
    try:
        owner, lecture = setup(server)
        r = create(owner, lecture["id"], 1001)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert create(owner, lecture["id"], 1000).status_code == 201
        assert requests.options(server.url + "/api/uploads").headers["Tus-Max-Size"] == "1000"
    finally:
        server.stop()


def test_checksums_accept_good_chunks_and_discard_bad_ones(server):
    owner, lecture = setup(server)
    data = os.urandom(200_000)
    path = location(create(owner, lecture["id"], len(data)))
    first, second = data[:120_000], data[120_000:]
    good = "sha256 " + base64.b64encode(hashlib.sha256(first).digest()).decode()
    assert patch(owner, path, 0, first, **{"Upload-Checksum": good}).status_code == 204
    bad = "sha1 " + base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    r = patch(owner, path, 120_000, second, **{"Upload-Checksum": bad})
    assert r.status_code == 460 and r.json()["error"]["code"] == "checksum_mismatch"
    assert offset_of(owner, path) == 120_000
    r = patch(owner, path, 120_000, second, **{"Upload-Checksum": "md5 AAAA"})
    assert r.status_code == 400
    ok = "sha1 " + base64.b64encode(hashlib.sha1(second).digest()).decode()
    r = patch(owner, path, 120_000, second, **{"Upload-Checksum": ok})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))


def test_creation_with_upload_and_termination(server):
    owner, lecture = setup(server)
    data = os.urandom(50_000)
    r = create(owner, lecture["id"], 80_000, data=data, headers={"Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "50000"
    path = location(r)
    assert owner.delete(path, headers=TUS).status_code == 204
    assert requests.head(server.url + path, headers={**TUS, **owner.headers()}).status_code == 404
    assert patch(owner, path, 50_000, data).status_code == 404


def raw_partial_patch(server, token, path, offset, data, send):
    """Sends a PATCH announcing len(data) bytes, sends only `send` of them and hangs up,
    as a client whose connection drops would."""
    u = urlparse(server.url)
    s = socket.create_connection((u.hostname, u.port))
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    s.sendall(head.encode() + data[:send])
    time.sleep(0.5)
    s.close()


def test_interrupted_upload_resumes_at_the_right_offset_also_after_restart(tmp_path, lectern_bin, samples):
    server = Server(tmp_path / "data").start()
    try:
        owner, lecture = setup(server)
        data = (samples / "good/screencast_webcam_h264_aac_720p.mp4").read_bytes()
        path = location(create(owner, lecture["id"], len(data)))
        raw_partial_patch(server, owner.token, path, 0, data, 1_500_000)
        deadline = time.time() + 10
        while offset_of(owner, path) == 0 and time.time() < deadline:
            time.sleep(0.1)
        kept = offset_of(owner, path)
        assert 0 < kept <= 1_500_000
        server.kill()  # a crash, not a clean stop
        server.start()
        assert offset_of(owner, path) == kept
        r = patch(owner, path, kept, data[kept:])
        assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
        lec, _ = owner.wait_lecture(lecture["id"])
        assert lec["status"] == "ready", lec
        stored = server.stored("uploads/" + path.rsplit("/", 1)[1])
        assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        server.stop()


def test_tus_js_client_uploads_unmodified(server, samples):
    """The other reference client: tus-js-client 4 in Node, in 700 kB chunks."""
    owner, lecture = setup(server)
    script = Path(__file__).parent / "clients" / "tus_upload.mjs"
    clip = samples / "good/rocket_launch_vp8_vorbis_640x360.webm"
    out = subprocess.run(["node", str(script), server.url + "/api/uploads", owner.token, lecture["id"], str(clip)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lec, _ = owner.wait_lecture(lecture["id"])
    assert lec["status"] == "ready", lec


def test_expired_uploads_are_gone(tmp_path, lectern_bin):
    server = Server(tmp_path / "data", env={"LECTERN_UPLOAD_TTL": "1"}).start()
    try:
        owner, lecture = setup(server)
        r = create(owner, lecture["id"], 1000)
        expires = r.headers["Upload-Expires"]
        assert expires.endswith("GMT")
        path = location(r)
        time.sleep(2.2)
        assert requests.head(server.url + path, headers={**TUS, **owner.headers()}).status_code == 410
        r = patch(owner, path, 0, b"x" * 10)
        assert r.status_code == 410 and r.json()["error"]["code"] == "upload_expired"
    finally:
        server.stop()


def peak_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_server_memory_stays_flat_for_a_large_upload(server):
    """256 MiB in one streamed PATCH: the server's peak RSS grows by far less."""
    owner, lecture = setup(server)
    size = 256 * 1024 * 1024
    path = location(create(owner, lecture["id"], size))
    before = peak_rss_kib(server.proc.pid)
    block = os.urandom(1024 * 1024)

    def body():
        for _ in range(size // len(block)):
            yield block

    # A generator body goes out with chunked transfer encoding.
    r = owner.patch(path, headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, data=body())
    assert r.status_code == 204, r.text
    assert int(r.headers["Upload-Offset"]) == size
    growth_mib = (peak_rss_kib(server.proc.pid) - before) / 1024
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.0f} MiB for a 256 MiB upload"
