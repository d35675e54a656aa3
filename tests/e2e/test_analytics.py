"""Viewing analytics: beacons sent with a playback grant's beacon token become views,
watch time, completion, an audience-retention curve and quality of experience for the
course's owner (JSON and CSV); nobody else reads them, a forged token adds nothing, a
guessed session id cannot add to another viewer's session, and old sessions are rolled
up into daily counts and dropped."""
import sqlite3
import subprocess
import time
import uuid

import requests

from conftest import WORLD, Api, Server


def sql(server, statement):
    if WORLD == "distributed":
        subprocess.run(["psql", server.world["DATABASE_URL"], "-q", "-c", statement], check=True, capture_output=True)
    else:
        with sqlite3.connect(server.data_dir / "lectern.db") as db:
            db.execute(statement)


def beacon(server, token, session, events, agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"):
    return requests.post(f"{server.url}/api/beacons", json={"token": token, "session": session, "events": events},
                         headers={"User-Agent": agent}, timeout=10)


def report_when(owner, lecture, views, timeout=10):
    deadline = time.time() + timeout
    while True:
        r = owner.ok(owner.get(f"/api/lectures/{lecture['id']}/analytics"))
        if r["views"] >= views or time.time() > deadline:
            return r
        time.sleep(0.2)


def test_beacons_become_views_retention_and_qoe_for_the_owner_only(tmp_path, lectern_bin, samples):
    server = Server(tmp_path / "data", env={"LECTERN_ANALYTICS_KEEP_DAYS": "30"}).start()
    try:
        owner = Api.signup(server.url, "owner")
        course = owner.course(title="Signals")
        lecture = owner.lecture(course["id"], "Sampling")
        owner.upload(lecture["id"], samples / "good/gnome_screencast_vp8_1024x768_37s.webm")
        ready, _ = owner.wait_lecture(lecture["id"])
        d = ready["duration_secs"]
        a, b, outsider = (Api.signup(server.url, "student") for _ in range(3))
        for s in (a, b):
            s.ok(s.post(f"/api/courses/{course['id']}/enroll"), 201)
        ta, tb = a.playback(lecture["id"])["beacon_token"], b.playback(lecture["id"])["beacon_token"]
        s1, s2, s3 = (str(uuid.uuid4()) for _ in range(3))

        # A session 40 days old, to be rolled up into daily counts and dropped.
        old_day = int(time.time() // 86400) - 40
        sql(server, f"INSERT INTO view_sessions (id, lecture_id, course_id, user_id, browser, started_at, day, updated_at, watched_ms, cover_lo, cover_hi) "
                    f"VALUES ('{uuid.uuid4()}', '{lecture['id']}', '{course['id']}', '{a.user['id']}', 'firefox', {old_day * 86400}, {old_day}, {old_day * 86400}, 7000, 0, 0)")

        # A watches it all in two beacons, with a stall; B watches the first half and
        # hits an error; A comes back for the first quarter (Firefox).
        assert beacon(server, ta, s1, [{"kind": "start", "startup_ms": 400}, {"kind": "watched", "from": 0, "to": d / 2},
                                       {"kind": "rebuffer", "ms": 500}, {"kind": "switch", "height": 720}]).status_code == 204
        assert beacon(server, ta, s1, [{"kind": "watched", "from": d / 2, "to": d}]).status_code == 204
        assert beacon(server, tb, s2, [{"kind": "start", "startup_ms": 800}, {"kind": "watched", "from": 0, "to": d / 2},
                                       {"kind": "error", "fatal": False}]).status_code == 204
        assert beacon(server, ta, s3, [{"kind": "watched", "from": 0, "to": d / 4}], agent="Mozilla/5.0 Gecko/20100101 Firefox/121.0").status_code == 204
        first = report_when(owner, lecture, 4)
        # B cannot add to A's session by using its id, nor can a forged token add anything.
        assert beacon(server, tb, s1, [{"kind": "watched", "from": 0, "to": d}, {"kind": "start", "startup_ms": 5}]).status_code == 204
        forged = beacon(server, ta[:-2] + ("AA" if not ta.endswith("AA") else "BB"), str(uuid.uuid4()), [{"kind": "watched", "from": 0, "to": d}])
        assert forged.status_code == 403
        time.sleep(1.5)
        r = report_when(owner, lecture, 4)
        assert r == first
        assert r["views"] == 4 and r["unique_viewers"] == 2, r  # 3 kept + 1 rolled up; viewers over the kept ones
        assert abs(r["watch_secs"] - (d + d / 2 + d / 4 + 7)) < 0.5, r["watch_secs"]
        assert abs(r["completion_rate"] - 1 / 3) < 1e-6
        assert len(r["retention"]) == 100 and r["retention"][0] == 1.0
        assert abs(r["retention"][30] - 2 / 3) < 1e-6 and abs(r["retention"][99] - 1 / 3) < 1e-6
        assert r["qoe"]["startup_p50_ms"] == 400, r["qoe"]
        assert r["qoe"]["startup_p50_ms"] == 400 and r["qoe"]["startup_p95_ms"] == 800
        assert r["qoe"]["rebuffer_ratio"] > 0 and r["qoe"]["rebuffers_per_view"] == 1 / 3
        assert {e["browser"]: (e["views"], e["errors"]) for e in r["qoe"]["errors_by_browser"]} == {"chrome": (2, 1), "firefox": (1, 0)}
        days = {p["day"]: p for p in r["per_day"]}
        assert len(days) == 2 and min(days) < max(days) and days[min(days)]["views"] == 1 and days[max(days)]["views"] == 3

        course_report = owner.ok(owner.get(f"/api/courses/{course['id']}/analytics"))
        assert course_report["views"] == 4 and course_report["lectures"][0]["lecture_id"] == lecture["id"]
        csv = owner.get(f"/api/courses/{course['id']}/analytics.csv")
        assert csv.headers["Content-Type"].startswith("text/csv") and csv.headers["Content-Disposition"].startswith("attachment")
        lines = csv.text.strip().split("\r\n")
        assert lines[0].startswith("lecture_id,title,views") and lines[1].startswith(f"{lecture['id']},\"Sampling\",4,2,")

        for who in (a, outsider):
            assert who.get(f"/api/lectures/{lecture['id']}/analytics").status_code in (403, 404)
            assert who.get(f"/api/courses/{course['id']}/analytics").status_code in (403, 404)
        # Work a beacon causes is bounded.
        many = [{"kind": "switch", "height": 360}] * 201
        assert beacon(server, ta, str(uuid.uuid4()), many).status_code == 400
        huge = requests.post(f"{server.url}/api/beacons", data="x" * (17 * 1024), timeout=10)
        assert huge.status_code == 413
        assert beacon(server, ta, "not-a-uuid", []).status_code == 400
    finally:
        server.stop()
