"""The fence's cost: every probe and transcode of an upload runs in a child process of
the `lectern` binary that fences itself in (rlimits, Landlock, seccomp) before it reads
the file. What that adds to a job is the child's start: exec, dynamic linking, the
sandbox, and GStreamer's start from its plugin registry. This measures

  - a fenced child doing nothing (`lectern fenced check`): exec + sandbox;
  - the fenced analysis of a short upload (`lectern fenced analyse`): that plus
    GStreamer's start plus the probe, the look at the end and a fixed ladder, i.e. the
    probe time a lecture waits before its first job;

each as the median of several runs. The transcode section measures the whole job
(children included) against ffmpeg; set against its wall time, these are the fence's
share.
"""
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import main, machine_notes, make_video, target  # noqa: E402

LIMITS = {"memory_bytes": 8 << 30, "file_bytes": 2 << 30}


def fenced(lectern_bin, task, input_, readable, writable):
    """One fenced child run as Lectern's parent runs it; returns (wall seconds, outcome)."""
    envelope = {"limits": LIMITS, "cpu_secs": 120, "readable": [str(p) for p in readable], "writable": str(writable),
                "input": input_}
    started = time.perf_counter()
    proc = subprocess.Popen([lectern_bin, "fenced", task], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=writable, env={"PATH": "/usr/bin:/bin",
                                                                           "HOME": str(Path.home()),
                                                                           "MIMALLOC_ARENA_RESERVE": "64MiB"})
    proc.stdin.write((json.dumps(envelope) + "\n").encode())
    proc.stdin.flush()
    lines = proc.stdout.read().decode().splitlines()
    wall = time.perf_counter() - started
    proc.stdin.close()
    proc.wait(10)
    outcome = json.loads(lines[-1]) if lines else {}
    if "done" not in outcome:
        raise RuntimeError(f"fenced {task} did not finish: {lines[-1:]}")
    return wall, outcome["done"]


def median_ms(walls):
    return round(statistics.median(walls) * 1000, 1)


def run(quick, lectern_bin, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    runs = 3 if quick else 15
    source = make_video(work / "media" / "fence-10s-720p.mp4", seconds=10, width=1280, height=720)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        noop = [fenced(lectern_bin, "check", {"read": [], "write": [], "allocate": 0, "spin_secs": 0}, [], scratch)[0]
                for _ in range(runs)]
        request = {"source": str(source), "timeout_secs": 30, "chunk_secs": 0, "per_title": False,
                   "limits": {"max_width": 8192, "max_height": 8192, "max_fps": 300, "max_duration_secs": 43200,
                              "max_gap_secs": 600}}
        analyses = [fenced(lectern_bin, "analyse", request, [source], scratch) for _ in range(runs)]
    facts = analyses[-1][1]["facts"]
    rows = [
        {"what": "fenced child doing nothing (exec + sandbox)", "median_ms": median_ms(noop),
         "max_ms": round(max(noop) * 1000, 1)},
        {"what": "fenced analysis of a 10 s 720p upload (probe time)", "median_ms": median_ms([a for a, _ in analyses]),
         "max_ms": round(max(a for a, _ in analyses) * 1000, 1)},
    ]
    notes = machine_notes() + [
        f"{runs} runs each; the analysis found {facts['width']}x{facts['height']} {facts['duration_secs']:.1f} s",
        "a lecture starts two children (analysis, transcode), a chunked one one more per chunk",
    ]
    targets = [target("fenced child start, ms (median)", median_ms(noop), "<= 50", median_ms(noop) <= 50)]
    return {"title": "The fence: what a fenced child costs", "rows": rows, "notes": notes, "targets": targets}


if __name__ == "__main__":
    main(run, "fence")
