"""Signed playback: who may get a token, what a token opens, and every way of
faking one. Also the HTTP semantics of /play (Range, ETag, Cache-Control, CORS)."""
import base64
import hashlib
import hmac
import http.client
import json
import re
import time
import uuid

import pytest
import requests

from conftest import Api, Server, b64url, sign_jwt
from test_media import transcode


@pytest.fixture(scope="module")
def world(shared_server, samples):
    owner = Api.signup(shared_server.url, "owner")
    course = owner.course(title="Playback course")
    lectures = []
    for name in ["good/rocket_launch_vp8_vorbis_640x360.webm", "audio_only/chime_opus_2s.webm"]:
        lec = owner.lecture(course["id"], name)
        owner.upload(lec["id"], samples / name)
        lectures.append(lec)
    for lec in lectures:
        done, _ = owner.wait_lecture(lec["id"])
        assert done["status"] == "ready", done
    return shared_server, owner, course, lectures


def test_only_enrolled_students_owner_and_admin_get_tokens(world):
    server, owner, course, (video, audio) = world
    student = Api.signup(server.url, "student")
    r = student.post(f"/api/lectures/{video['id']}/playback")
    assert r.status_code == 403 and "enroll" in r.json()["error"]["message"]
    student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)
    grant = student.playback(video["id"])
    assert grant["url"].startswith("/play/") and grant["url"].endswith("/master.m3u8")
    assert 3500 <= grant["expires_at"] - time.time() <= 3700
    assert owner.playback(video["id"])["url"]
    pending = owner.lecture(course["id"], "Not uploaded yet")
    assert owner.post(f"/api/lectures/{pending['id']}/playback").status_code == 409


def get(server, path, **headers):
    return requests.get(server.url + path, headers=headers)


def assert_refused(r):
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert r.json()["error"]["code"] == "bad_playback_token"
    assert b"#EXTM3U" not in r.content


def token_bytes(token: str) -> bytes:
    """A playback token's 57 bytes: format (1), expiry (8, big-endian), lecture id (16),
    asset id (16), then the first 16 bytes of HMAC-SHA256 over the 41 before."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) == 57 and len(token) == 76, token
    return raw


def sign_token(signed: bytes, key: bytes) -> str:
    return b64url(signed + hmac.new(key, signed, hashlib.sha256).digest()[:16])


def token_asset(token: str) -> str:
    return str(uuid.UUID(bytes=token_bytes(token)[25:41]))


def test_token_attacks_are_refused_without_bytes(world):
    server, owner, course, (video, audio) = world
    grant = owner.playback(video["id"])
    token = grant["url"].split("/")[2]
    assert get(server, f"/play/{token}/master.m3u8").status_code == 200
    raw = token_bytes(token)
    signed, key = raw[:41], server.playback_key()
    assert raw[0] == 1 and raw[9:25] == uuid.UUID(video["id"]).bytes
    assert int.from_bytes(raw[1:9], "big") == grant["expires_at"]
    # This test writes tokens as the server does: re-signing the same bytes gives the token back.
    assert sign_token(signed, key) == token
    audio_token = owner.playback(audio["id"])["url"].split("/")[2]
    audio_signed = token_bytes(audio_token)[:41]
    now = int(time.time())
    forged_key = sign_token(signed, b"not the real key at all, sorry!!")
    expired = sign_token(signed[:1] + (now - 1).to_bytes(8, "big") + signed[9:], key)
    far_future_unsigned = signed[:1] + (now + 10**9).to_bytes(8, "big") + signed[9:] + raw[41:]
    other_lecture = sign_token(audio_signed, b"guess")
    other_asset_old_tag = signed[:25] + audio_signed[25:41] + raw[41:]
    other_format = sign_token(b"\x02" + signed[1:], key)
    # The JWT format this token replaced, signed with the real key.
    old_jwt = sign_jwt({"alg": "HS256", "typ": "JWT"}, {"sub": video["id"], "asset": token_asset(token), "uid": "x",
                                                        "iss": "lectern", "aud": "lectern-play", "iat": now, "exp": now + 3600}, key)
    unsigned_jwt = f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{old_jwt.split('.')[1]}."
    access_token_as_playback = owner.token
    for bad in [forged_key, expired, b64url(far_future_unsigned), other_lecture, b64url(other_asset_old_tag), other_format,
                old_jwt, unsigned_jwt, access_token_as_playback, "garbage", token[:-3] + ("abc" if not token.endswith("abc") else "abd"),
                token[:-1], token + "A", token.upper() if token.upper() != token else token.lower(), "=" * 76]:
        for path in ["master.m3u8", "poster.jpg", "storyboard.vtt"]:
            assert_refused(get(server, f"/play/{bad}/{path}"))
    # What the key signs is taken (here an earlier expiry): each refusal above is for its one fault.
    sooner = sign_token(signed[:1] + (now + 60).to_bytes(8, "big") + signed[9:], key)
    assert get(server, f"/play/{sooner}/master.m3u8").status_code == 200


def test_a_token_opens_only_its_own_lecture(world):
    server, owner, course, (video, audio) = world
    video_token = owner.playback(video["id"])["url"].split("/")[2]
    audio_grant = owner.playback(audio["id"])
    audio_asset = token_asset(audio_grant["url"].split("/")[2])
    # The asset comes from the signed token, never from the path.
    for path in [
        f"../{audio_asset}/master.m3u8", f"..%2F{audio_asset}%2Fmaster.m3u8", f"%2e%2e/{audio_asset}/master.m3u8",
        "..%2f..%2fkeys%2fplayback.key", "manifest.json", "v360/../../x", "%2e%2e%2f%2e%2e%2fdata",
        "....//....//etc/passwd", "v360/index.m3u8%00.ts",
    ]:
        # http.client sends the path as written (requests would normalise the dots).
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", f"/play/{video_token}/{path}")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        assert r.status in (400, 404), (path, r.status)
        assert b"#EXTM3U" not in body and b"/var/" not in body and b"data/" not in body, body
    # A valid token for the video cannot be combined with the audio lecture's files.
    text = get(server, f"/play/{video_token}/master.m3u8").text
    assert "v360" in text and "mp4a.40.2" in text


def test_http_semantics_of_play(world):
    server, owner, course, (video, audio) = world
    grant = owner.playback(video["id"])
    base = server.url + grant["url"].rsplit("/", 1)[0]
    master = requests.get(base + "/master.m3u8")
    assert master.headers["Access-Control-Allow-Origin"] == "*"
    # Cacheable for as long as the token lives, and no longer.
    cache_control = master.headers["Cache-Control"]
    assert re.fullmatch(r"public, max-age=\d+", cache_control), cache_control
    left = grant["expires_at"] - time.time()
    assert left - 5 <= int(cache_control.rsplit("=", 1)[1]) <= left + 1, (cache_control, left)
    uri = [l for l in master.text.splitlines() if l and not l.startswith("#")][0]
    playlist = requests.get(f"{base}/{uri}")
    seg = [l for l in playlist.text.splitlines() if l.endswith(".ts")][0]
    seg_url = f"{base}/{uri.rsplit('/', 1)[0]}/{seg}"
    full = requests.get(seg_url)
    assert full.status_code == 200 and full.headers["Content-Type"] == "video/mp2t"
    assert full.content[0] == 0x47  # MPEG-TS sync byte
    size = len(full.content)
    assert int(full.headers["Content-Length"]) == size and full.headers["Accept-Ranges"] == "bytes"
    part = requests.get(seg_url, headers={"Range": "bytes=188-375"})
    assert part.status_code == 206 and part.content == full.content[188:376]
    assert part.headers["Content-Range"] == f"bytes 188-375/{size}"
    tail = requests.get(seg_url, headers={"Range": "bytes=-188"})
    assert tail.status_code == 206 and tail.content == full.content[-188:]
    bad = requests.get(seg_url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{size}"
    # Again: the same bytes under the same validators, and a conditional GET.
    again = requests.get(seg_url)
    assert again.content == full.content
    for h in ("Last-Modified", "Content-Type", "Content-Length", "Accept-Ranges"):
        assert again.headers[h] == full.headers[h], h
    since = {"If-Modified-Since": full.headers["Last-Modified"]}
    assert requests.get(seg_url, headers=since).status_code == 304
    head = requests.head(seg_url)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["Content-Length"]) == size
    pre = requests.options(seg_url, headers={"Origin": "https://lms.example.edu", "Access-Control-Request-Method": "GET"})
    assert pre.status_code in (200, 204) and pre.headers["Access-Control-Allow-Origin"] == "*"
    missing = requests.get(f"{base}/v360/seg_99999.ts")
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "*"
    # Playback URLs only read: a write is refused in the API's error shape, and the
    # refusal is readable cross-origin like every other /play answer.
    write = requests.post(seg_url, data=b"x")
    assert write.status_code == 405 and write.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in write.headers["Allow"] and write.headers["Access-Control-Allow-Origin"] == "*"
    assert all(res.headers.get("X-Request-Id") for res in (master, full, part, pre, missing, write))
    # Latency is recorded under the route's template (never the token).
    metrics = requests.get(server.url + "/metrics").text
    assert re.search(r'lectern_http_request_duration_seconds_count\{method="GET",route="/play/\{token\}/\{\*path\}",status="206"\} [1-9]', metrics)
    assert base.rsplit("/", 1)[1] not in metrics
    # nosniff holds media to its type.
    for res in (master, playlist, full):
        assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src" in missing.headers["Content-Security-Policy"]


def test_many_viewers_asking_for_one_segment_at_once_get_it_whole(world):
    # Each must get the whole segment with its validators.
    from concurrent.futures import ThreadPoolExecutor
    server, owner, course, (video, audio) = world
    base = server.url + owner.playback(video["id"])["url"].rsplit("/", 1)[0]
    uri = [l for l in requests.get(base + "/master.m3u8").text.splitlines() if l and not l.startswith("#")][-1]
    playlist = requests.get(f"{base}/{uri}").text
    seg = [l for l in playlist.splitlines() if l.endswith(".ts")][-1]
    seg_url = f"{base}/{uri.rsplit('/', 1)[0]}/{seg}"
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: requests.get(seg_url), range(64)))
    assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    assert len({a.content for a in answers}) == 1 and answers[0].content[0] == 0x47
    assert len({a.headers["Last-Modified"] for a in answers}) == 1
    assert all(int(a.headers["Content-Length"]) == len(a.content) for a in answers)


def test_public_poster_for_course_cards(world):
    server, owner, course, (video, audio) = world
    listed = Api.signup(server.url, "student").ok(Api(server.url, owner.token).get(f"/api/courses/{course['id']}"))
    assert listed["poster_url"] == f"/media/posters/{video['id']}.jpg"
    r = requests.get(server.url + listed["poster_url"])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    assert requests.get(server.url + f"/media/posters/{audio['id']}.jpg").status_code == 404


def test_tokens_expire(tmp_path, lectern_bin, samples):
    server = Server(tmp_path / "data", env={"LECTERN_PLAYBACK_TOKEN_TTL": "2"}).start()
    try:
        owner = Api.signup(server.url, "owner")
        lec, _ = transcode(owner, samples / "audio_only/chime_opus_2s.webm")
        url = server.url + owner.playback(lec["id"])["url"]
        assert requests.get(url).status_code == 200
        time.sleep(3.2)
        assert_refused(requests.get(url))
    finally:
        server.stop()
