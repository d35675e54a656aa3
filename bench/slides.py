"""Slides: what the slides job costs beside the lecture's transcode. Target: the slides
job adds at most 10 % to the transcode's CPU.

For each source, three fenced children run one after the other as the worker runs them
(`lectern fenced analyse` for the facts and the real per-title ladder, then `fenced
transcode` of the whole lecture with that ladder, then `fenced slides`, which decodes at
2 pictures a second up to 1920 px wide and starts Tesseract once per slide). CPU is user
+ system from getrusage(RUSAGE_CHILDREN) around each child, its own children
(Tesseract) included; wall is from its start to its last line.

Sources: the generated slide lecture of tests/e2e/slide_lecture.py (its truth gives the
accuracy), a real GNOME screencast (VP8) and Big Buck Bunny, a video without slides.
--quick runs the generated lecture only and checks that slides are found.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
import slide_lecture  # noqa: E402
from common import machine_notes, main, ratio, target  # noqa: E402
from fence import LIMITS  # noqa: E402
from ladder import MEDIA, fetch  # noqa: E402

SOURCES = [
    ("screencast (VP8, real)", "good/gnome_screencast_vp8_1024x768_37s.webm"),
    ("movie, no slides (real)", "good/bbb_h264_aac51_720p_5s.mp4"),
]
TESSERACT = "/usr/bin/tesseract"
WATCHDOG = {"stall_secs": 60, "total_secs": 600, "max_gap_secs": 600}
ANALYSE = {"timeout_secs": 60, "chunk_secs": 0, "per_title": True,
           "limits": {"max_width": 8192, "max_height": 8192, "max_fps": 300, "max_duration_secs": 43200,
                      "max_gap_secs": 600}}
# What Lectern's parent passes on to a child (gate/src/fence.rs KEPT_ENV), and what it adds.
KEPT_ENV = ["PATH", "HOME", "XDG_CACHE_HOME", "LANG", "LC_ALL", "GST_PLUGIN_SYSTEM_PATH", "GST_PLUGIN_PATH"]


def fenced(lectern_bin, task, input_, readable, writable, starts_programs=False):
    """One fenced child run as the worker runs it (bench/fence.py's `fenced`, with the
    envelope's `starts_programs` and the child's CPU); returns (outcome, wall s, CPU s)."""
    writable.mkdir(parents=True, exist_ok=True)
    envelope = {"limits": LIMITS, "cpu_secs": WATCHDOG["total_secs"] + 60, "readable": [str(p) for p in readable],
                "writable": str(writable), "starts_programs": starts_programs, "input": input_}
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ} | {
        "TMPDIR": str(writable), "XDG_RUNTIME_DIR": str(writable),
        "MIMALLOC_ARENA_RESERVE": "64MiB", "MIMALLOC_PURGE_DELAY": "10"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(writable / "child.log", "wb") as log:
        proc = subprocess.Popen([lectern_bin, "fenced", task], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, cwd=writable, env=env)
        # Stdin stays open until the child ends: its end of file tells the child the parent is gone.
        proc.stdin.write((json.dumps(envelope) + "\n").encode())
        proc.stdin.flush()
        lines = proc.stdout.read().decode().splitlines()
        wall = time.perf_counter() - started
        proc.stdin.close()
        proc.wait(10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    outcome = json.loads(lines[-1]) if lines else {}
    if "done" not in outcome:
        tail = (writable / "child.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"fenced {task} did not finish: {lines[-1:]}; log: {tail}")
    return outcome["done"], wall, cpu


def measure(lectern_bin, label, source, work):
    """Analysis, whole transcode and slides job of one source: one row and the slides."""
    shutil.rmtree(work, ignore_errors=True)
    analysis, _, analyse_cpu = fenced(lectern_bin, "analyse", {"source": str(source), **ANALYSE}, [source],
                                      work / "analyse")
    facts, ladder = analysis["facts"], analysis["ladder"]
    asset = str(uuid.uuid4())
    job = {"job_id": "bench", "lecture_id": str(uuid.uuid4()), "asset_id": asset, "source_key": "source",
           "output_prefix": f"assets/{asset}", "source": facts, "part": "whole",
           "range": {"start_secs": 0.0, "end_secs": None, "first_segment": 0}, "ladder": ladder,
           "audio_kbps": 128, "segment_secs": 6, "keyframe_secs": 2}
    (work / "transcode" / "out").mkdir(parents=True)
    _, t_wall, t_cpu = fenced(lectern_bin, "transcode", {"job": job, "source": str(source),
                                                         "out_dir": str(work / "transcode" / "out"), **WATCHDOG},
                              [source], work / "transcode")
    (work / "slides" / "out").mkdir(parents=True)
    request = {"source": str(source), "facts": facts, "out_dir": str(work / "slides" / "out"), "languages": "eng",
               "tesseract": TESSERACT, **WATCHDOG}
    report, s_wall, s_cpu = fenced(lectern_bin, "slides", request, [source, TESSERACT], work / "slides",
                                   starts_programs=True)
    row = {"source": label, "video": f"{facts['width']}x{facts['height']} {facts['duration_secs']:.1f} s",
           "ladder": " ".join(r["name"] for r in ladder), "analysis cpu_s": round(analyse_cpu, 2),
           "transcode cpu_s": round(t_cpu, 2), "transcode wall_s": round(t_wall, 2),
           "slides cpu_s": round(s_cpu, 2), "slides wall_s": round(s_wall, 2),
           "slides / transcode CPU": ratio(s_cpu, t_cpu), "slides found": len(report["slides"])}
    return row, report["slides"]


def accuracy(slides, truth):
    """Each true change against the found slide nearest to it."""
    changes = truth["changes"]
    nearest = [min(slides, key=lambda s: abs(s["start_secs"] - c["at"])) for c in changes]
    return {"truth slides": len(changes),
            "max abs(start - truth) s": round(max(abs(s["start_secs"] - c["at"]) for s, c in zip(nearest, changes)), 2),
            "titles right": sum(s["title"] == c["title"] for s, c in zip(nearest, changes))}


def run(quick, lectern_bin, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    lecture, truth = slide_lecture.make(work / "media")
    sources = [("generated slide lecture", lecture)]
    if not quick:
        fetch([f for _, f in SOURCES])
        sources += [(label, MEDIA / f) for label, f in SOURCES]
    rows, targets = [], []
    notes = machine_notes() + [
        "one run each, children one after the other; CPU is user + system of the fenced child and its children "
        "(Tesseract for the slides); the transcode is the whole job (every rung of the per-title ladder, audio, "
        "poster, storyboard); the analysis (probe and per-title trial encodes) is shown apart, not in the ratio",
    ]
    for n, (label, source) in enumerate(sources):
        row, slides = measure(lectern_bin, label, source, work / f"source-{n}")
        assert slides or not quick, f"no slides found in {source}"
        if label.startswith("generated") and slides:
            row |= accuracy(slides, truth)
        rows.append(row)
        starts = ", ".join(f"{s['start_secs']:.1f}" for s in slides)
        notes.append(f"{label}: slides at {starts} s" if slides else f"{label}: no slides")
        if not quick:
            share = row["slides / transcode CPU"]
            targets.append(target(f"{label}: slides CPU / transcode CPU", share, "<= 0.10",
                                  share is not None and share <= 0.10))
    if quick:
        notes.append("quick run: the generated lecture only, numbers not meaningful")
    return {"title": "Slides: the slides job's cost beside the transcode", "rows": rows, "notes": notes,
            "targets": targets}


if __name__ == "__main__":
    main(run, "slides")
