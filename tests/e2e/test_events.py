"""Live events over the WebSocket: owners see progress, ready and failed of their
lectures; enrolled students hear that a lecture is ready; others hear nothing."""
import json
import threading
import time

from websockets.sync.client import connect

from conftest import Api


def listen(url, collected, stop, **kw):
    with connect(url, **kw) as ws:
        while not stop.is_set():
            try:
                collected.append(json.loads(ws.recv(timeout=0.2)))
            except TimeoutError:
                continue


def test_owner_and_enrolled_student_get_live_events(server, samples):
    owner = Api.signup(server.url, "owner")
    enrolled = Api.signup(server.url, "student")
    outsider = Api.signup(server.url, "student")
    course = owner.course()
    enrolled.ok(enrolled.post(f"/api/courses/{course['id']}/enroll"), 201)
    ws = server.url.replace("http://", "ws://") + "/api/events"
    streams = {"owner": [], "enrolled": [], "outsider": []}
    stop = threading.Event()
    threads = [
        threading.Thread(target=listen, args=(f"{ws}?token={owner.token}", streams["owner"], stop)),
        # A browser carries its token as the WebSocket subprotocol pair "bearer, <token>".
        threading.Thread(target=listen, args=(ws, streams["enrolled"], stop), kwargs={"subprotocols": ["bearer", enrolled.token]}),
        threading.Thread(target=listen, args=(ws, streams["outsider"], stop), kwargs={"additional_headers": {"Authorization": f"Bearer {outsider.token}"}}),
    ]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while not all(any(m["type"] == "hello" for m in s) for s in streams.values()) and time.time() < deadline:
        time.sleep(0.05)
    assert all(any(m["type"] == "hello" for m in s) for s in streams.values()), streams
    good = owner.lecture(course["id"], "Good")
    bad = owner.lecture(course["id"], "Broken")
    owner.upload(good["id"], samples / "good/screencast_webcam_h264_aac_720p.mp4")
    owner.upload(bad["id"], samples / "broken/truncated_header_only.mkv")
    owner.wait_lecture(good["id"])
    owner.wait_lecture(bad["id"])
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    kinds = [(m["type"], m.get("lecture_id")) for m in streams["owner"]]
    assert ("ready", good["id"]) in kinds, kinds
    assert ("failed", bad["id"]) in kinds, kinds
    percents = [m["percent"] for m in streams["owner"] if m["type"] == "progress" and m["lecture_id"] == good["id"]]
    assert percents and percents == sorted(percents) and max(percents) > 0, percents
    failed = [m for m in streams["owner"] if m["type"] == "failed"][0]
    assert "truncated" in failed["reason"] or "damaged" in failed["reason"]
    assert [m for m in streams["enrolled"] if m["type"] != "hello"] == [
        {"type": "lecture_ready", "lecture_id": good["id"], "course_id": course["id"], "title": "Good"}
    ]
    assert [m for m in streams["outsider"] if m["type"] != "hello"] == []


def test_events_need_a_valid_token(server):
    ws = server.url.replace("http://", "ws://") + "/api/events"
    try:
        with connect(f"{ws}?token=forged"):
            raise AssertionError("connected without a valid token")
    except Exception as e:  # the upgrade is refused with 401
        assert "401" in str(e), e
