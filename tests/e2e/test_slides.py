"""Lectures that index themselves: the slides job finds where a new slide comes, reads
its words with Tesseract, and offers the owner proposed chapters; the words are found
by catalog search and a hit opens at its slide. On a generated slide lecture with known
truth (an inset that never stops moving, a cursor, a video inside a slide, a cross-fade
and a fade through black) and on a real screen recording."""
import json
import time

import pytest
import requests

import slide_lecture
from conftest import MEDIA, ROOT, Api

TRUTH_TOLERANCE_SECS = 1.0


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return slide_lecture.make(MEDIA / "generated")


def ready_slide_lecture(base, path):
    """An owner, their published course, and its lecture made of `path`, ready."""
    owner = Api.signup(base, "owner")
    course = owner.course(title="Digital signal processing, on slides")
    lecture = owner.lecture(course["id"], "Sampling, aliasing and filters")
    owner.upload(lecture["id"], path)
    done, _ = owner.wait_lecture(lecture["id"])
    assert done["status"] == "ready", done
    return owner, course, lecture


def wait_slides(owner, lecture_id, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        slides = owner.ok(owner.get(f"/api/lectures/{lecture_id}/slides"))
        if slides:
            return slides
        time.sleep(1)
    raise AssertionError("no slides were found in time")


def test_slides_are_found_titled_searchable_and_published_as_chapters(shared_server, generated):
    path, truth = generated
    owner, course, lecture = ready_slide_lecture(shared_server.url, path)
    slides = wait_slides(owner, lecture["id"])

    found = [(round(s["start_secs"], 2), s["title"]) for s in slides]
    expected = [(c["at"], c["title"]) for c in truth["changes"]]
    assert len(slides) == len(expected), f"found {found}, expected {expected}"
    for slide, change in zip(slides, truth["changes"]):
        assert abs(slide["start_secs"] - change["at"]) <= TRUTH_TOLERANCE_SECS, (found, expected)
        assert slide["title"] == change["title"], (found, expected)
    thumb = requests.get(shared_server.url + slides[1]["thumbnail_url"], headers=owner.headers(), timeout=10)
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"

    # Students see nothing of the proposal, neither the slides nor their pictures.
    student = Api.signup(shared_server.url, "student")
    student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)
    assert student.get(f"/api/lectures/{lecture['id']}/slides").status_code == 403
    assert requests.get(shared_server.url + slides[1]["thumbnail_url"], headers=student.headers(), timeout=10).status_code == 403
    assert student.ok(student.get(f"/api/lectures/{lecture['id']}/chapters")) == []

    # A word shown only on a slide finds the lecture, at that slide.
    hits = student.ok(student.get("/api/search", params={"q": slide_lecture.ONSCREEN_ONLY_WORD}))["items"]
    screen = [h for h in hits if h["kind"] == "screen" and h["lecture_id"] == lecture["id"]]
    assert screen, hits
    shown_at = next(c["at"] for c in truth["changes"] if any(slide_lecture.ONSCREEN_ONLY_WORD in b for b in slide_bullets(c["title"])))
    assert abs(screen[0]["start_secs"] - shown_at) <= TRUTH_TOLERANCE_SECS, screen[0]

    # The owner accepts them (the first renamed, the last dropped) and students see them.
    chapters = [{"start_secs": s["start_secs"], "title": s["title"]} for s in slides[:-1]]
    chapters[0]["title"] = "Sampling"
    published = owner.ok(owner.put(f"/api/lectures/{lecture['id']}/chapters", json={"chapters": chapters}))
    assert [c["title"] for c in published][:2] == ["Sampling", truth["changes"][1]["title"]]
    assert student.ok(student.get(f"/api/lectures/{lecture['id']}/chapters")) == published


def test_a_course_names_the_language_its_slides_are_read_in(shared_server):
    owner = Api.signup(shared_server.url, "owner")
    assert owner.course()["language"] == "en"
    course = owner.course(language="de")
    assert course["language"] == "de"
    assert owner.ok(owner.patch(f"/api/courses/{course['id']}", json={"language": "FR"}))["language"] == "fr"
    refused = owner.patch(f"/api/courses/{course['id']}", json={"language": "klingon"})
    assert refused.status_code in (400, 422), refused.text
    assert "language must be one of" in refused.json()["error"]["message"]
    assert owner.ok(owner.get(f"/api/courses/{course['id']}"))["language"] == "fr"


def slide_bullets(title):
    return next(s["bullets"] for s in slide_lecture.SLIDES if s["title"] == title)


def test_a_real_screen_recording_has_few_false_changes(shared_server, samples):
    truth = json.loads((ROOT / "tests/e2e/screencast_truth.json").read_text())
    owner = Api.signup(shared_server.url, "owner")
    course = owner.course(title="Desktop tour")
    lecture = owner.lecture(course["id"], "Displays")
    owner.upload(lecture["id"], samples / truth["file"])
    done, _ = owner.wait_lecture(lecture["id"])
    assert done["status"] == "ready", done
    slides = wait_slides(owner, lecture["id"])
    starts = [s["start_secs"] for s in slides]
    known = truth["changes"] + truth.get("ambiguous", []) + [0.0]
    false = [t for t in starts if all(abs(t - k) > TRUTH_TOLERANCE_SECS for k in known)]
    allowed = max(1, int(truth["duration"] / 60))
    assert len(false) <= allowed, f"false changes at {false} (found {starts})"
    missed = [k for k in truth["changes"] if all(abs(t - k) > TRUTH_TOLERANCE_SECS for t in starts)]
    print("screencast: found", starts, "missed", missed, "false", false)
