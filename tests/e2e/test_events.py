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
    student_events = [m for m in streams["enrolled"] if m["type"] != "hello"]
    assert [{k: v for k, v in m.items() if k != "seq"} for m in student_events] == [
        {"type": "lecture_ready", "lecture_id": good["id"], "course_id": course["id"], "title": "Good"}
    ]
    seqs = [m["seq"] for m in streams["owner"] if m["type"] != "hello"]
    assert seqs == sorted(set(seqs)) and student_events[0]["seq"] in seqs
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


def test_a_client_that_was_away_gets_exactly_what_it_missed(server, samples):
    """One owner listens throughout; another connection of theirs drops, events happen,
    and it comes back with the last number it saw: it gets what the first one heard
    meanwhile, no more, no less, and the feed answers the same."""
    owner = Api.signup(server.url, "owner")
    student = Api.signup(server.url, "student")
    other = Api.signup(server.url, "owner")
    course = owner.course()
    student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)
    ws = server.url.replace("http://", "ws://") + "/api/events"
    always, stop = [], threading.Event()
    listener = threading.Thread(target=listen, args=(ws, always, stop), kwargs={"subprotocols": ["bearer", owner.token]})
    listener.start()
    first = owner.lecture(course["id"], "First")
    with connect(ws, subprotocols=["bearer", owner.token]) as away:
        assert json.loads(away.recv(timeout=5))["type"] == "hello"
        owner.upload(first["id"], samples / "good/screencast_webcam_h264_aac_720p.mp4")
        owner.wait_lecture(first["id"])
        seen = []
        deadline = time.time() + 10
        while not any(m["type"] == "ready" for m in seen) and time.time() < deadline:
            try:
                seen.append(json.loads(away.recv(timeout=0.5)))
            except TimeoutError:
                pass
    last = seen[-1]["seq"]
    # Away: a second lecture is processed, a broken one fails, another owner's too.
    second = owner.lecture(course["id"], "Second")
    broken = owner.lecture(course["id"], "Broken")
    theirs = other.lecture(other.course()["id"], "Theirs")
    owner.upload(second["id"], samples / "good/screencast_webcam_h264_aac_720p.mp4")
    owner.upload(broken["id"], samples / "broken/truncated_header_only.mkv")
    other.upload(theirs["id"], samples / "good/screencast_webcam_h264_aac_720p.mp4")
    for lecture in (second, broken):
        owner.wait_lecture(lecture["id"])
    other.wait_lecture(theirs["id"])
    time.sleep(1.0)
    missed_live = [m for m in always if m.get("seq", 0) > last]
    assert {("ready", second["id"]), ("failed", broken["id"])} <= {(m["type"], m.get("lecture_id")) for m in missed_live}

    with connect(f"{ws}?after={last}", subprotocols=["bearer", owner.token]) as back:
        assert json.loads(back.recv(timeout=5))["type"] == "hello"
        resumed = []
        while len(resumed) < len(missed_live):
            resumed.append(json.loads(back.recv(timeout=5)))
        try:
            extra = json.loads(back.recv(timeout=1))
            raise AssertionError(f"more than was missed: {extra}")
        except TimeoutError:
            pass
    stop.set()
    listener.join()
    assert resumed == missed_live
    assert all(m["lecture_id"] != theirs["id"] for m in resumed)

    feed = owner.ok(owner.get("/api/events", params={"after": last, "limit": 1000}))
    assert feed["events"] == missed_live and feed["last_seq"] == missed_live[-1]["seq"] and not feed["more"] and not feed["gone"]
    paged = owner.ok(owner.get("/api/events", params={"after": last, "limit": 2}))
    assert paged["events"] == missed_live[:2] and paged["more"] and paged["last_seq"] == missed_live[1]["seq"]
    # The student's feed holds only what students hear of the course.
    mine = student.ok(student.get("/api/events", params={"after": 0}))["events"]
    assert {(m["type"], m["lecture_id"]) for m in mine} >= {("lecture_ready", first["id"]), ("lecture_ready", second["id"])}
    assert {m["type"] for m in mine} <= {"lecture_ready", "playable"}
    # A number this installation never gave out: start afresh.
    assert owner.ok(owner.get("/api/events", params={"after": 10**9}))["gone"]
