"""Proposed chapters in player-web, in Debian's Chromium (playwright-core): on the
generated slide lecture, the owner's studio lists the slides found (filled in by the
live event once the slides job has run), the owner edits and publishes them, and an
enrolled student sees them on the seek bar; see player-web/tests/slides.mjs. The data
is made through the API to keep the browser flow short."""
import json
import subprocess

import pytest

import slide_lecture
from conftest import ARTIFACTS, MEDIA, ROOT, WORLD, Api, Server
from test_slides import ready_slide_lecture

WEB = ROOT / "player-web"


def session(api):
    """What the web app keeps in localStorage for a signed-in user."""
    return json.dumps({"token": api.token, "user": api.ok(api.get("/api/me"))})


def test_owner_publishes_proposed_chapters_a_student_sees_on_the_seek_bar(tmp_path, lectern_bin):
    if not (WEB / "dist" / "index.html").exists():
        pytest.fail("player-web is not built: run `npm run build` in player-web (scripts/test.sh does)")
    video, truth = slide_lecture.make(MEDIA / "generated")
    shots = ARTIFACTS / f"screenshots-{WORLD}"
    server = Server(tmp_path / "data", env={"LECTERN_WEB_DIR": str(WEB / "dist")}).start()
    try:
        owner, course, lecture = ready_slide_lecture(server.url, video)
        student = Api.signup(server.url, "student")
        student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)
        # Started as soon as the lecture is ready: the slides usually arrive while the
        # studio is open.
        out = subprocess.run(
            ["timeout", "600", "node", str(WEB / "tests" / "slides.mjs"), server.url, session(owner), session(student),
             course["id"], lecture["id"], str(shots)],
            capture_output=True, text=True,
        )
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-1000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report["ok"], report
        # What the student is served: the slides' times, the first renamed, the last dropped.
        slides = owner.ok(owner.get(f"/api/lectures/{lecture['id']}/slides"))
        chapters = student.ok(student.get(f"/api/lectures/{lecture['id']}/chapters"))
        # Every slide found and titled (test_slides.py checks how well), so the seek bar
        # had chapters to show.
        assert len(chapters) == len(truth["changes"]) - 1, (chapters, slides)
        assert student.get(f"/api/lectures/{lecture['id']}/slides").status_code == 403
        kept = [s for i, s in enumerate(slides) if i == 0 or (s["title"] and i < len(slides) - 1)]
        assert [c["title"] for c in chapters] == ["Sampling"] + [s["title"] for s in kept[1:]], (chapters, slides)
        # The first slide, found a frame or two in, starts the lecture.
        starts = [0.0 if i == 0 and s["start_secs"] < 1 else s["start_secs"] for i, s in enumerate(kept)]
        assert [round(c["start_secs"], 2) for c in chapters] == [round(t, 2) for t in starts], (chapters, slides)
        print("slides flow:", report)
    finally:
        server.stop()
    for name in ["studio-proposed-chapters", "student-chapters-from-slides"]:
        assert (shots / f"{name}.png").stat().st_size > 10_000
