"""Chapters: set by the owner as a list or a WebVTT chapters file, checked against the
lecture's length, read by anyone who may see the lecture (the seek bar and the lecture
page in test_browser.py)."""
import requests

from conftest import Api



def put(api, lecture_id, **kw):
    return requests.put(f"{api.base}/api/lectures/{lecture_id}/chapters", headers=api.headers(kw.pop("headers", None)), timeout=30, **kw)


def test_owners_set_chapters_and_students_read_them(shared_server, synth):
    owner = Api.signup(shared_server.url, "owner")
    course = owner.course(title="Chaptered")
    lecture = owner.lecture(course["id"], "Sampling")
    owner.upload(lecture["id"], synth.long_720p(14))
    assert owner.wait_lecture(lecture["id"])[0]["status"] == "ready"
    path = f"/api/lectures/{lecture['id']}/chapters"

    chapters = [{"start_secs": 0, "title": "Intro"}, {"start_secs": 4.25, "title": "  Nyquist  "}, {"start_secs": 9, "title": "Aliasing"}]
    r = put(owner, lecture["id"], json={"chapters": chapters})
    assert r.status_code == 200, r.text
    assert r.json() == [{"start_secs": 0.0, "title": "Intro"}, {"start_secs": 4.25, "title": "Nyquist"}, {"start_secs": 9.0, "title": "Aliasing"}]

    student = Api.signup(shared_server.url, "student")
    assert student.post(f"/api/courses/{course['id']}/enroll").status_code in (200, 201)
    assert student.ok(student.get(path)) == r.json()
    assert put(student, lecture["id"], json={"chapters": []}).status_code == 403

    # A WebVTT chapters file replaces them: each cue's start and text.
    vtt = "WEBVTT\n\n1\n00:00.000 --> 00:06.000\n<b>Part one</b>\n\n2\n00:06.000 --> 00:14.000\nPart two &amp; more\n"
    r = put(owner, lecture["id"], data=vtt.encode(), headers={"Content-Type": "text/vtt"})
    assert r.status_code == 200, r.text
    assert r.json() == [{"start_secs": 0.0, "title": "Part one"}, {"start_secs": 6.0, "title": "Part two & more"}]

    for bad, says in [
        ([{"start_secs": 5, "title": "b"}, {"start_secs": 2, "title": "a"}], "chapter 2 does not start after chapter 1"),
        ([{"start_secs": 20, "title": "late"}], "after the lecture ends"),
        ([{"start_secs": -1, "title": "early"}], "from 0"),
        ([{"start_secs": 1, "title": ""}], "1 to 200"),
        ([{"start_secs": 1, "title": "x" * 201}], "1 to 200"),
    ]:
        r = put(owner, lecture["id"], json={"chapters": bad})
        assert r.status_code == 400 and says in r.json()["error"]["message"], (bad, r.text)
    r = put(owner, lecture["id"], data=b"WEBVTT\n\n00:05.000 --> 00:04.000\nbackwards\n", headers={"Content-Type": "text/vtt"})
    assert r.status_code == 400 and "line 3 (cue 1)" in r.json()["error"]["message"], r.text
    r = put(owner, lecture["id"], json=[{"start_secs": 1, "title": "a list, not an object"}])
    assert r.status_code == 400
    # Refusals changed nothing; an empty list removes them all.
    assert len(owner.ok(owner.get(path))) == 2
    assert put(owner, lecture["id"], json={"chapters": []}).json() == []
    assert owner.ok(owner.get(path)) == []
