"""Time to playable: wall time from the last upload byte to a playable master, for
lectures of several lengths, one worker (`lectern serve`, LECTERN_WORKERS=1).

Sources are 1280x720p30 lecture-like material made from the real samples of tests/media
(looped to length, see bench/transcode.py). Lectern transcodes a lecture whole today,
so playable = ready; issue 8's chunked jobs are what would cut this for long lectures.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Lectern, main, machine_notes, target, tus_upload, wait_lecture_ready  # noqa: E402
from transcode import make_source  # noqa: E402


def run(quick, lectern_bin, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    minutes = [0.1] if quick else [1, 5, 30]
    rows = []
    with Lectern(lectern_bin, work / "lectern-data", env={"LECTERN_WORKERS": "1"}) as lec:
        owner = Api.signup(lec.url, "owner")
        course = owner.post("/api/courses", {"title": "Time to playable"})
        for m in minutes:
            secs = max(4, round(m * 60))
            source = make_source(work / f"source_720p30_{secs}s.mp4", secs, 1280, 720, reencode=False)
            lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": f"{m} min"})
            tus_upload(owner, lecture["id"], source)
            started = time.time()
            wait_lecture_ready(owner, lecture["id"], timeout=4 * 3600)
            wall = time.time() - started
            grant = owner.post(f"/api/lectures/{lecture['id']}/playback")
            assert grant["url"].endswith("master.m3u8")
            rows.append({"content_min": m, "to_playable_s": round(wall, 1), "x_realtime": round(secs / wall, 2)})
    worst = max(r["to_playable_s"] for r in rows)
    notes = machine_notes() + [
        "one worker; playable = ready (the whole ladder is encoded before the first student can watch)",
        "the < 60 s target is issue 8's (chunked, watchable early); it is reported here for the record",
    ]
    return {"title": "Time to playable (720p lecture material, one worker)", "rows": rows, "notes": notes,
            "targets": [target("worst time to playable, s", worst, "< 60 (issue 8)", worst < 60)]}


if __name__ == "__main__":
    main(run, "playable")
