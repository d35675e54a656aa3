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


def test_live_connections_are_capped_per_account_and_end_with_the_token(tmp_path, lectern_bin):
    from conftest import Server
    from websockets.exceptions import ConnectionClosed
    from contextlib import ExitStack
    s = Server(tmp_path / "data", env={"LECTERN_SOCKETS_PER_USER": "3", "LECTERN_ACCESS_TOKEN_TTL": "4"}).start()
    try:
        user = Api.signup(s.url, "student")
        ws = s.url.replace("http://", "ws://") + "/api/events"
        stack = ExitStack()
        hold = lambda: stack.enter_context(connect(ws, subprotocols=["bearer", user.token]))  # noqa: E731
        held = [hold() for _ in range(3)]
        try:
            with connect(ws, subprotocols=["bearer", user.token]):
                raise AssertionError("a fourth connection was let in")
        except Exception as e:
            assert "429" in str(e), e
        # Another account has places of its own.
        other = Api.signup(s.url, "student")
        with connect(ws, subprotocols=["bearer", other.token]) as ok:
            assert json.loads(ok.recv(timeout=5))["type"] == "hello"
        # A place comes back when a connection closes.
        held.pop().close()
        time.sleep(0.3)
        held.append(hold())
        # The token lives 4 s: every connection made with it is closed then, with 4001.
        started = time.time()
        for conn in held:
            try:
                while True:
                    conn.recv(timeout=10)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4001, closed
        assert time.time() - started < 8
        stack.close()
    finally:
        s.stop()
