"""Enrollment codes: the only way into a priced course until a payment provider is set
up. Single or multi-use, with an expiry, made and withdrawn by the course's owner; a
code's last use goes to exactly one student however many try at once."""
import os
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor

from conftest import WORLD, Api


def error_of(r):
    return r.json()["error"]["code"]


def expire(server, code):
    """Moves a code's expiry into the past, in the backend itself."""
    sql = f"UPDATE enrollment_codes SET expires_at = 1 WHERE code = '{code.replace('-', '')}'"
    if WORLD == "distributed":
        subprocess.run(["psql", server.world["DATABASE_URL"], "-q", "-c", sql], check=True, capture_output=True)
    else:
        with sqlite3.connect(server.data_dir / "lectern.db") as db:
            db.execute(sql)


def test_codes_let_students_into_a_priced_course_and_nothing_else_does(server):
    owner = Api.signup(server.url, "owner")
    course = owner.course(title="Priced", price_cents=1999)
    enroll = lambda api, body=None: api.post(f"/api/courses/{course['id']}/enroll", json=body)
    students = [Api.signup(server.url, "student") for _ in range(6)]

    for body in (None, {}, {"purchase": True}, {"code": ""}):
        r = enroll(students[0], body)
        assert r.status_code == 402 and error_of(r) == "purchase_required", (body, r.text)
    assert students[0].post(f"/api/courses/{course['id']}/codes", json={}).status_code == 403
    assert students[0].get(f"/api/courses/{course['id']}/codes").status_code == 403

    # A single-use code: of five students trying at once, exactly one gets in.
    single = owner.ok(owner.post(f"/api/courses/{course['id']}/codes", json={"max_uses": 1}), 201)
    assert single["uses"] == 0 and single["max_uses"] == 1 and single["expires_at"] is None
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda s: enroll(s, {"code": single["code"]}).status_code, students[:5]))
    assert sorted(codes) == [201, 403, 403, 403, 403], codes
    winner = students[codes.index(201)]
    assert enroll(winner, {"code": "anything"}).status_code == 200  # already in: no second use

    # A multi-use code, typed in lower case without dashes; an unknown code is refused.
    multi = owner.ok(owner.post(f"/api/courses/{course['id']}/codes", json={"max_uses": 2, "expires_in_days": 30}), 201)
    assert multi["expires_at"] > 0
    losers = [s for s in students[:5] if s is not winner]
    typed = multi["code"].replace("-", "").lower()
    assert [enroll(s, {"code": typed}).status_code for s in losers[:3]] == [201, 201, 403]
    r = enroll(losers[3], {"code": "AAAA-BBBB-CCCC"})
    assert r.status_code == 403 and error_of(r) == "forbidden" and "not valid" in r.json()["error"]["message"]
    listed = {c["code"]: c["uses"] for c in owner.ok(owner.get(f"/api/courses/{course['id']}/codes"))}
    assert listed == {single["code"]: 1, multi["code"]: 2}

    # Expired and deleted codes let no one in; codes of another course neither.
    late = owner.ok(owner.post(f"/api/courses/{course['id']}/codes", json={"expires_in_days": 1}), 201)
    expire(server, late["code"])
    assert enroll(losers[3], {"code": late["code"]}).status_code == 403
    gone = owner.ok(owner.post(f"/api/courses/{course['id']}/codes", json={}), 201)
    assert owner.delete(f"/api/courses/{course['id']}/codes/{gone['code']}").status_code == 204
    assert owner.delete(f"/api/courses/{course['id']}/codes/{gone['code']}").status_code == 404
    assert enroll(losers[3], {"code": gone["code"]}).status_code == 403
    other = owner.course(title="Other", price_cents=500)
    foreign = owner.ok(owner.post(f"/api/courses/{other['id']}/codes", json={}), 201)
    assert enroll(losers[3], {"code": foreign["code"]}).status_code == 403
    for bad in ({"max_uses": 0}, {"max_uses": 100001}, {"expires_in_days": 0}, {"expires_in_days": 5000}):
        assert owner.post(f"/api/courses/{course['id']}/codes", json=bad).status_code == 400, bad

    # Who got in can watch; who did not cannot even ask for a playback grant.
    lecture = owner.lecture(course["id"], "Lesson")
    assert winner.get(f"/api/courses/{course['id']}").json()["enrolled"] is True
    assert losers[3].post(f"/api/lectures/{lecture['id']}/playback").status_code in (403, 409)
