"""Captions: WebVTT and SRT uploaded per language to a lecture that is already ready,
checked with faults named by line and cue, and served under the playback token as an
HLS subtitle group that ffmpeg reads (hls.js and the player: test_browser.py)."""
import subprocess

import pytest
import requests

from conftest import Api

ENGLISH = """WEBVTT

NOTE written for the test

intro
00:00:01.000 --> 00:00:03.000 align:start
The Fourier transform

00:00:07.000 --> 00:00:09.500
<v Ada>the Nyquist rate</v>

00:00:11.000 --> 00:00:13.000
and aliasing
"""

PORTUGUESE_SRT = """1
00:00:01,000 --> 00:00:03,000
A transformada de <i>Fourier</i>

2
00:00:07,000 --> 00:00:09,000
a taxa de Nyquist & o aliasing
"""


@pytest.fixture(scope="module")
def ready_lecture(shared_server, synth):
    owner = Api.signup(shared_server.url, "owner")
    course = owner.course(title="Signals, captioned")
    lecture = owner.lecture(course["id"], "Sampling")
    owner.upload(lecture["id"], synth.long_720p(14))
    done, _ = owner.wait_lecture(lecture["id"])
    assert done["status"] == "ready", done
    return shared_server, owner, course, lecture


def seconds(stamp):
    parts = [float(p) for p in stamp.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def read_cues(webvtt):
    """(start, end, text) of each cue of a WebVTT file, markup left out."""
    import re
    cues = []
    for block in webvtt.split("\n\n"):
        lines = block.strip().splitlines()
        timing = next((i for i, l in enumerate(lines) if "-->" in l), None)
        if timing is None:
            continue
        start, end = (seconds(t.split()[0]) for t in lines[timing].split("-->"))
        cues.append((start, end, re.sub(r"<[^>]+>", "", "\n".join(lines[timing + 1:]))))
    return cues


def put(api, lecture_id, language, text, **params):
    return api.session_put(f"/api/lectures/{lecture_id}/captions/{language}", text, params)


Api.session_put = lambda self, path, text, params: requests.put(
    self.base + path, data=text if isinstance(text, bytes) else text.encode(), params=params,
    headers=self.headers({"Content-Type": "text/vtt"}), timeout=30)


def test_captions_join_a_ready_lecture_and_reach_ffmpeg(ready_lecture, tmp_path):
    server, owner, course, lecture = ready_lecture
    r = put(owner, lecture["id"], "en", ENGLISH, label="English")
    assert r.status_code == 201, r.text
    assert r.json() == {**r.json(), "language": "en", "label": "English", "default": True, "cue_count": 3}
    r = put(owner, lecture["id"], "PT-br", PORTUGUESE_SRT, label="Português")
    assert r.status_code == 201 and r.json()["language"] == "pt-BR" and not r.json()["default"], r.text
    listed = owner.ok(owner.get(f"/api/lectures/{lecture['id']}/captions"))
    assert [(t["language"], t["default"]) for t in listed] == [("en", True), ("pt-BR", False)]

    grant = owner.playback(lecture["id"])
    base = server.url + grant["url"].rsplit("/", 1)[0]
    master = requests.get(base + "/master.m3u8")
    assert master.status_code == 200 and master.headers["Cache-Control"] == "no-cache"
    assert 'TYPE=SUBTITLES,URI="subs/en/index.m3u8",GROUP-ID="subs",LANGUAGE="en",NAME="English",DEFAULT=YES' in master.text
    assert 'LANGUAGE="pt-BR",NAME="Português"' in master.text
    assert all('SUBTITLES="subs"' in l for l in master.text.splitlines() if l.startswith("#EXT-X-STREAM-INF"))
    playlist = requests.get(base + "/subs/en/index.m3u8").text
    assert [l for l in playlist.splitlines() if l.endswith(".vtt")] == ["seg_00000.vtt", "seg_00001.vtt", "seg_00002.vtt"]
    second = requests.get(base + "/subs/en/seg_00001.vtt")
    assert second.headers["Content-Type"].startswith("text/vtt")
    assert "X-TIMESTAMP-MAP=MPEGTS:324000000,LOCAL:00:00:00.000" in second.text
    assert "00:00:07.000 --> 00:00:09.500\n<v Ada>the Nyquist rate</v>" in second.text
    assert "Fourier" not in second.text
    pt = requests.get(base + "/subs/pt-BR/seg_00001.vtt").text
    assert "a taxa de Nyquist &amp; o aliasing" in pt
    for missing in ["subs/fr/index.m3u8", "subs/en/seg_00009.vtt", "subs/en/seg_1.vtt", "subs/en/../master.m3u8", "subs/en"]:
        assert requests.get(f"{base}/{missing}").status_code in (400, 404), missing

    # ffmpeg reads the subtitle rendition from the master, on the video's clock.
    out = tmp_path / "english.vtt"
    run = subprocess.run(["ffmpeg", "-v", "error", "-y", "-strict", "experimental", "-i", base + "/master.m3u8", "-map", "0:s:0", "-c:s", "webvtt", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    cues = read_cues(out.read_text())
    assert [text for _, _, text in cues] == ["The Fourier transform", "the Nyquist rate", "and aliasing"], cues
    # ffmpeg starts its output at the first cue; the spacing is the file's.
    first = cues[0][0]
    assert [(round(a - first, 3), round(b - first, 3)) for a, b, _ in cues[:3]] == [(0, 2), (6, 8.5), (10, 12)], cues

    # Replacing a language shows at once; deleting the default makes another the default.
    r = put(owner, lecture["id"], "en", ENGLISH.replace("aliasing", "folding"), label="English (edited)")
    assert r.status_code == 200 and r.json()["label"] == "English (edited)"
    assert "folding" in requests.get(base + "/subs/en/seg_00001.vtt").text + requests.get(base + "/subs/en/seg_00002.vtt").text
    r = owner.patch(f"/api/lectures/{lecture['id']}/captions/pt-BR", json={"default": True})
    assert r.status_code == 200 and r.json()["default"]
    assert [t["default"] for t in owner.ok(owner.get(f"/api/lectures/{lecture['id']}/captions"))] == [True, False]
    assert owner.delete(f"/api/lectures/{lecture['id']}/captions/pt-BR").status_code == 204
    assert [(t["language"], t["default"]) for t in owner.ok(owner.get(f"/api/lectures/{lecture['id']}/captions"))] == [("en", True)]
    assert owner.delete(f"/api/lectures/{lecture['id']}/captions/pt-BR").status_code == 404


@pytest.mark.parametrize("text, where", [
    ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfine\n\n00:00:04.000 --> 00:00:03.000\nbackwards\n", "line 6 (cue 2)"),
    ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nno blank line\n00:00:02.000 --> 00:00:03.000\nnext\n", "line 5 (cue 1)"),
    ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 --> 00:00:xx,000\nbad\n", "line 6 (cue 2)"),
    ("WEBVTT FILE\n", "no cues"),
    ("just some text\n", "line 1 (cue 1)"),
])
def test_bad_captions_are_refused_with_the_line_and_cue(ready_lecture, text, where):
    server, owner, course, lecture = ready_lecture
    r = put(owner, lecture["id"], "de", text)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid" and where in error["message"], error


def test_only_the_owner_captions_and_inputs_are_bounded(ready_lecture):
    server, owner, course, lecture = ready_lecture
    student = Api.signup(server.url, "student")
    assert student.post(f"/api/courses/{course['id']}/enroll").status_code in (200, 201)
    assert put(student, lecture["id"], "en", ENGLISH).status_code == 403
    assert student.ok(student.get(f"/api/lectures/{lecture['id']}/captions")) is not None
    r = put(owner, lecture["id"], "english", ENGLISH)
    assert r.status_code == 400 and "language tag" in r.json()["error"]["message"]
    r = put(owner, lecture["id"], "en", "WEBVTT\n\n00:01.000 --> 00:02.000\ncaf\xe9\n".encode("latin-1"))
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]
    huge = "WEBVTT\n\n" + "".join(f"{i // 60:02}:{i % 60:02}.000 --> {i // 60:02}:{i % 60:02}.500\n{'x' * 200}\n\n" for i in range(3600)) * 3
    r = put(owner, lecture["id"], "en", huge)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = put(owner, lecture["id"], "en", ENGLISH, label="\x07bell")
    assert r.status_code == 400
    nobody = Api(server.url).get(f"/api/lectures/{lecture['id']}/captions")
    assert nobody.status_code == 401


def test_words_said_in_a_lecture_are_found_at_their_time(shared_server, synth):
    owner = Api.signup(shared_server.url, "owner")
    word = "zq" + __import__("os").urandom(4).hex()
    course = owner.course(title=f"Acoustics {word}", published=True)
    lecture = owner.lecture(course["id"], "Resonance")
    owner.upload(lecture["id"], synth.long_720p(14))
    assert owner.wait_lecture(lecture["id"])[0]["status"] == "ready"
    spoken = f"WEBVTT\n\n00:00:02.000 --> 00:00:04.000\nstanding waves\n\n00:00:08.500 --> 00:00:11.000\nthe {word}phone resonates\n"
    assert put(owner, lecture["id"], "en", spoken).status_code == 201
    student = Api.signup(shared_server.url, "student")

    hits = student.ok(student.get("/api/search", params={"q": f"{word}phone resonates"}))
    assert hits["total"] == 1, hits
    hit = hits["items"][0]
    assert (hit["kind"], hit["lecture_id"], hit["start_secs"]) == ("transcript", lecture["id"], 8.5), hit
    assert hit["text"] == f"the {word}phone resonates" and hit["course_title"] == course["title"]
    # A prefix finds it; the course's own title ranks with it, ahead of it.
    both = student.ok(student.get("/api/search", params={"q": word}))["items"]
    assert [h["kind"] for h in both] == ["course", "transcript"], both
    # Only within the course asked for, only where the viewer may look, only what is said.
    other = owner.course(title="Elsewhere", published=True)
    assert student.ok(student.get("/api/search", params={"q": word, "course": other["id"]}))["total"] == 0
    assert student.ok(student.get("/api/search", params={"q": word, "course": course["id"]}))["total"] == 2
    assert student.get("/api/search", params={"q": word, "course": "nope"}).status_code == 404
    assert student.ok(student.get("/api/search", params={"q": "standing waves resonates"}))["total"] == 0
    assert student.ok(student.get("/api/search", params={"q": "\")(*:"}))["total"] == 0
    owner.patch(f"/api/courses/{course['id']}", json={"published": False})
    assert student.ok(student.get("/api/search", params={"q": word}))["total"] == 0
    assert owner.ok(owner.get("/api/search", params={"q": word}))["total"] == 2
    # Deleting the captions takes their words out of search.
    assert owner.delete(f"/api/lectures/{lecture['id']}/captions/en").status_code == 204
    assert [h["kind"] for h in owner.ok(owner.get("/api/search", params={"q": word}))["items"]] == ["course"]
