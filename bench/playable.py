"""Time to playable (issue 8): lectures split into chunk jobs that any worker may take,
watchable while the rest is encoded.

1. What chunking costs: the same source through Lectern twice, in one job
   (LECTERN_CHUNK_SECS=0) and in chunks; SSIM and PSNR of every rung against the
   source for both, over all frames and over the frames at chunk edges, and the bytes.
2. Time to playable (status `playable`) and to complete (`ready`) from the last upload
   byte, for lectures of several lengths, with 1, 2 and 3 workers in one `lectern
   serve` (LECTERN_WORKERS), and the one-job time of the same lecture with one worker.
3. Watching early, for long lectures (BENCH_PLAYABLE_EARLY_MINUTES, default 60; the
   run stops a few chunks after the lecture turns playable): time to playable with one
   worker, and for a viewer who presses play at that moment, how long before the viewer
   needs them the next chunks of the lowest rungs are stored (negative: a stall).
4. A projection for 8 and 32 workers, stated as such: this machine has 2 cores, so
   workers beside each other share them. The jobs as measured with one worker (their
   own wall times, in the order ingest publishes them) are list-scheduled on N workers,
   each a machine like this one, plus the coordination time measured between jobs: once
   with the chunks planned for one worker, once as ingest plans them for N
   (LECTERN_PLAN_WORKERS=N, run on one worker).

Sources are 1280x720p30 lecture-like material made from the real samples of tests/media
(bench/transcode.py). The full run's lengths and worker counts can be narrowed with
BENCH_PLAYABLE_MINUTES (e.g. "10,30") and BENCH_PLAYABLE_WORKERS (e.g. "1,2").
"""
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Lectern, main, machine_notes, target, tus_upload  # noqa: E402
from transcode import FPS, make_source  # noqa: E402

CHUNK_SECS = 60


def wait_status(owner, lecture_id, timeout):
    """Polls the lecture until ready; returns (seconds to playable, seconds to ready)."""
    started = time.time()
    playable = None
    deadline = started + timeout
    while time.time() < deadline:
        lecture = owner.get(f"/api/lectures/{lecture_id}")
        status = lecture["status"]
        if status in ("playable", "ready") and playable is None:
            playable = time.time() - started
        if status == "ready":
            return playable, time.time() - started
        if status == "failed":
            raise RuntimeError(f"lecture failed: {lecture.get('failure_reason')}")
        time.sleep(0.25)
    raise RuntimeError(f"lecture not ready after {timeout}s")


def transcode_once(lectern_bin, data, source, chunk_secs, workers=1, plan_workers=0):
    """Uploads `source` to a fresh `lectern serve`; returns timings, the asset folder and
    the server's log. `plan_workers`: the workers ingest plans the chunks for
    (LECTERN_PLAN_WORKERS; 0: the workers running)."""
    shutil.rmtree(data, ignore_errors=True)
    env = {"LECTERN_WORKERS": str(workers), "LECTERN_CHUNK_SECS": str(chunk_secs), "RUST_LOG": "info",
           "LECTERN_PLAN_WORKERS": str(plan_workers)}
    with Lectern(lectern_bin, data, env=env) as lec:
        owner = Api.signup(lec.url, "owner")
        course = owner.post("/api/courses", {"title": "Time to playable"})
        lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": "Lecture"})
        tus_upload(owner, lecture["id"], source)
        playable, ready = wait_status(owner, lecture["id"], timeout=4 * 3600)
        log = lec.log_path.read_text(errors="replace")
    asset = max((data / "objects" / "assets").iterdir(), key=lambda p: p.stat().st_mtime)
    return {"playable": playable, "ready": ready, "asset": asset, "log": log}


def low_chunks_done(jobs):
    """(first segment, done) of the chunk jobs that store the lowest rung: that of the
    first chunk job, which ingest schedules first (alone, or with the whole ladder when
    it is small)."""
    first = next((p for p, _, _ in jobs if p.startswith("video-00000-")), None)
    if first is None:
        return []
    lowest = first.split("-")[-1]
    return sorted((int(p.split("-")[1]), t1) for p, _, t1 in jobs if p.startswith("video-") and lowest in p.split("-")[2:])


def early_viewing(lectern_bin, data, source, chunk_secs, chunks_ahead=3):
    """One worker, a lecture watched from the moment it turns playable: returns (seconds
    to playable, [margin of each of the next `chunks_ahead` low-rung chunks]). A margin is
    when the viewer reaches the chunk minus when it was stored."""
    shutil.rmtree(data, ignore_errors=True)
    env = {"LECTERN_WORKERS": "1", "LECTERN_CHUNK_SECS": str(chunk_secs), "RUST_LOG": "info"}
    with Lectern(lectern_bin, data, env=env) as lec:
        owner = Api.signup(lec.url, "owner")
        course = owner.post("/api/courses", {"title": "Watching early"})
        lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": "Lecture"})
        tus_upload(owner, lecture["id"], source)
        uploaded = time.time()
        while owner.get(f"/api/lectures/{lecture['id']}")["status"] not in ("playable", "ready"):
            if time.time() - uploaded > 3600:
                raise RuntimeError("not playable after an hour")
            time.sleep(0.25)
        playable_at = time.time()
        deadline = playable_at + 60 * (chunks_ahead + 2) * chunk_secs / 60 + 600
        while len(low_chunks_done(job_log(lec.log_path.read_text(errors="replace")))) < chunks_ahead + 1:
            if time.time() > deadline:
                raise RuntimeError("the low-rung chunks did not come")
            time.sleep(1)
        done = low_chunks_done(job_log(lec.log_path.read_text(errors="replace")))
    per_chunk = done[1][0] - done[0][0]
    margins = [playable_at + (seg // per_chunk) * chunk_secs - t for seg, t in done[1:chunks_ahead + 1]]
    return playable_at - uploaded, margins


# ------------------------------------------------------------------ 1. quality

FRAME_RE = re.compile(r"n:(\d+) .*?All:([0-9.]+)")
PSNR_RE = re.compile(r"n:(\d+) .*?psnr_avg:([0-9.inf]+)")


def per_frame(rendition, source, height):
    """Per-frame SSIM and PSNR of a rendition against the source downscaled to its size
    (bicubic). Both encodes went through the same scaler, so only encoding differs."""
    w = round(1280 * height / 720 / 2) * 2
    stats = rendition.parent / f"q_{height}_{rendition.parent.parent.name}"
    graph = (f"[0:v]setpts=N/{FPS}/TB,split[a0][a1];[1:v]setpts=N/{FPS}/TB,scale={w}:{height}:flags=bicubic,split[b0][b1];"
             f"[a0][b0]ssim=stats_file={stats}.ssim;[a1][b1]psnr=stats_file={stats}.psnr")
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(rendition), "-i", str(source), "-filter_complex", graph, "-f", "null", "-"],
                   check=True)
    ssim = {int(n): float(v) for n, v in FRAME_RE.findall(Path(f"{stats}.ssim").read_text())}
    psnr = {int(n): (float(v) if v != "inf" else 100.0) for n, v in PSNR_RE.findall(Path(f"{stats}.psnr").read_text())}
    return ssim, psnr


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else None


def quality_rows(lectern_bin, work, quick):
    seconds, chunk = (12, 6) if quick else (360, CHUNK_SECS)
    width, height = (640, 360) if quick else (1280, 720)
    source = make_source(work / f"quality_{height}p30_{seconds}s.mp4", seconds, width, height)
    one = transcode_once(lectern_bin, work / "data-one-job", source, 0)
    chunked = transcode_once(lectern_bin, work / "data-chunked", source, chunk)
    # Chunk edges in frames (30 fps: whole 6 s segments), and the frames within half a
    # second of each.
    edge_frames = {n for k in range(1, seconds // chunk) for n in range(k * chunk * FPS - 15, k * chunk * FPS + 15)}
    rows, worst_ssim, worst_edge, overhead = [], 0.0, 0.0, []
    for rung in sorted((d.name for d in chunked["asset"].iterdir() if d.is_dir() and d.name.startswith("v")),
                       key=lambda n: -int(n[1:])):
        h = int(rung[1:])
        measured = {}
        for name, run in (("one_job", one), ("chunked", chunked)):
            ssim, psnr = per_frame(run["asset"] / rung / "index.m3u8", source, h)
            # Frames are numbered from 1 by the filters.
            measured[name] = {
                "ssim": mean(ssim.values()), "psnr": mean(psnr.values()),
                "edge_ssim": mean(v for n, v in ssim.items() if n - 1 in edge_frames),
                "edge_psnr": mean(v for n, v in psnr.items() if n - 1 in edge_frames),
                "bytes": sum(f.stat().st_size for f in (run["asset"] / rung).glob("*.ts")),
            }
        o, c = measured["one_job"], measured["chunked"]
        d_all, d_edge = c["ssim"] - o["ssim"], c["edge_ssim"] - o["edge_ssim"]
        worst_ssim, worst_edge = min(worst_ssim, d_all), min(worst_edge, d_edge)
        overhead.append(c["bytes"] / o["bytes"] - 1)
        rows.append({
            "rung": rung, "one_job_ssim": round(o["ssim"], 4), "chunked_ssim": round(c["ssim"], 4), "ssim_diff": round(d_all, 4),
            "one_job_edge_ssim": round(o["edge_ssim"], 4), "chunked_edge_ssim": round(c["edge_ssim"], 4),
            "edge_ssim_diff": round(d_edge, 4),
            "one_job_psnr": round(o["psnr"], 2), "chunked_psnr": round(c["psnr"], 2),
            "edge_psnr_diff": round(c["edge_psnr"] - o["edge_psnr"], 2),
            "bytes_overhead_pct": round(100 * (c["bytes"] / o["bytes"] - 1), 2),
        })
    total_one = sum(f.stat().st_size for f in one["asset"].glob("v*/*.ts"))
    total_chunked = sum(f.stat().st_size for f in chunked["asset"].glob("v*/*.ts"))
    targets = [
        target("chunked SSIM minus one-job SSIM, worst rung, all frames", round(worst_ssim, 4), ">= -0.002",
               worst_ssim >= -0.002),
        target("chunked SSIM minus one-job SSIM, worst rung, frames at chunk edges", round(worst_edge, 4), ">= -0.002",
               worst_edge >= -0.002),
        target("bytes of the chunked ladder over the one-job ladder, %", round(100 * (total_chunked / total_one - 1), 2), "<= 3",
               total_chunked <= 1.03 * total_one),
    ]
    note = (f"quality: a {seconds} s {width}x{height}p30 source in one job and in {chunk} s chunks; "
            "each rung against the source downscaled with bicubic, frames paired by index; edges: the 30 frames around each chunk edge")
    return rows, targets, note


# ------------------------------------------------------------------ 2. and 3. timing

LOG_TIME = re.compile(r"^(\S+Z)\s")


def job_log(log):
    """The worker's jobs in the order they started: (part, started, done) in seconds."""
    def at(line):
        return datetime.fromisoformat(LOG_TIME.match(line).group(1).replace("Z", "+00:00")).timestamp()
    started, jobs = {}, []
    for line in log.splitlines():
        if "transcode job started" in line:
            job = re.search(r"job=(\S+)", line).group(1)
            # tracing writes string fields quoted.
            started[job] = (re.search(r"part=(\S+)", line).group(1).strip('"'), at(line))
        elif "transcode job done" in line:
            job = re.search(r"job=(\S+)", line).group(1)
            part, t0 = started[job]
            jobs.append((part, t0, at(line)))
    return sorted(jobs, key=lambda j: j[1])


def audio_first_report(log):
    """Seconds from the audio job's start to its first report of stored segments, or None."""
    jobs = {p: t0 for p, t0, _ in job_log(log)}
    for line in log.splitlines():
        if "first audio segments reported" in line and "audio" in jobs:
            return datetime.fromisoformat(LOG_TIME.match(line).group(1).replace("Z", "+00:00")).timestamp() - jobs["audio"]
    return None


def project(jobs, workers, audio_first=None):
    """List-schedules the measured jobs (in start order) on `workers` machines; returns
    (time to playable, time to complete) from the first job's start. A job waits for a
    free worker and for the coordination gap measured between jobs here. The audio job
    runs in a lane of its own beside the video jobs, from the start. `audio_first`:
    seconds from the audio job's start to its first stored segments (it reports them as
    it goes), if known."""
    video = [j for j in jobs if j[0] != "audio"]
    gaps = [b[1] - a[2] for a, b in zip(video, video[1:])]
    gap = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    free = [0.0] * workers
    done = {}
    for part, t0, t1 in jobs:
        if part == "audio":
            done[part] = gap + (audio_first if audio_first is not None else t1 - t0)
            free.append(gap + t1 - t0)
            continue
        w = min(range(workers), key=lambda i: free[i])
        start = free[w] + gap
        free[w] = start + (t1 - t0)
        done[part] = free[w]
    # Playable once the first audio segments and the lowest rungs' first chunk (the
    # first chunk job scheduled) are stored. (`free` holds the audio lane last.)
    low_first = next((p for p, _, _ in jobs if p.startswith("video-00000-")), None)
    firsts = [done[p] for p in ("audio", low_first) if p in done]
    return (max(firsts) if firsts else None), max(free), gap


def run(quick, lectern_bin, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    rows, notes = [], machine_notes()
    q_rows, targets, q_note = quality_rows(lectern_bin, work, quick)
    notes.append(q_note)

    minutes = [0.2] if quick else [float(m) for m in os.environ.get("BENCH_PLAYABLE_MINUTES", "10,30,60").split(",")]
    worker_counts = [1] if quick else [int(w) for w in os.environ.get("BENCH_PLAYABLE_WORKERS", "1,2,3").split(",")]
    chunk = 6 if quick else CHUNK_SECS
    worst_playable, projection_ok, worst_margin = 0.0, True, None
    for m in minutes:
        secs = max(4, round(m * 60))
        source = make_source(work / f"source_720p30_{secs}s.mp4", secs, 1280, 720, reencode=False)
        whole = transcode_once(lectern_bin, work / "data-timing", source, 0)
        rows.append({"content_min": m, "workers": 1, "jobs": "one", "to_playable_s": round(whole["ready"], 1),
                     "to_complete_s": round(whole["ready"], 1)})
        measured_jobs, audio_first = None, None
        for w in worker_counts:
            r = transcode_once(lectern_bin, work / "data-timing", source, chunk, workers=w)
            worst_playable = max(worst_playable, r["playable"])
            rows.append({"content_min": m, "workers": w, "jobs": "chunks", "to_playable_s": round(r["playable"], 1),
                         "to_complete_s": round(r["ready"], 1),
                         "complete_vs_one_job_over_workers": round(r["ready"] / (whole["ready"] / w), 2)})
            if w == 1:
                measured_jobs = job_log(r["log"])
                audio_first = audio_first_report(r["log"])
        for w in [8, 32]:
            # The chunks as planned for one worker, and as ingest plans them for w (their
            # length and which run whole), each run here on one worker and projected.
            planned = transcode_once(lectern_bin, work / "data-timing", source, chunk, plan_workers=w)
            planned_jobs = job_log(planned["log"])
            for plan, jobs, first in [(1, measured_jobs, audio_first), (w, planned_jobs, audio_first_report(planned["log"]))]:
                playable, complete, gap = project(jobs, w, first)
                ratio = complete / (whole["ready"] / w)
                if plan == w:
                    projection_ok &= ratio <= 1.15
                rows.append({"content_min": m, "workers": w, "jobs": f"chunks planned for {plan} (projection, {len(jobs)} jobs)",
                             "to_playable_s": round(playable, 1) if playable is not None else None,
                             "to_complete_s": round(complete, 1), "complete_vs_one_job_over_workers": round(ratio, 2)})
        notes.append(f"{m} min: {len(measured_jobs)} jobs with one worker; coordination gap between jobs {gap:.2f} s (median)")
    # Quick: 30 s of 360p in 6 s chunks (five), so the machinery runs end to end.
    early = [0.5] if quick else [float(m) for m in os.environ.get("BENCH_PLAYABLE_EARLY_MINUTES", "60").split(",") if m]
    for m in early:
        secs = round(m * 60)
        width, height = (640, 360) if quick else (1280, 720)
        source = make_source(work / f"source_{height}p30_{secs}s.mp4", secs, width, height, reencode=False)
        playable, margins = early_viewing(lectern_bin, work / "data-timing", source, chunk)
        worst_playable = max(worst_playable, playable)
        worst_margin = min([worst_margin, *margins] if worst_margin is not None else margins)
        rows.append({"content_min": m, "workers": 1, "jobs": "chunks (watched early)", "to_playable_s": round(playable, 1),
                     "next_chunks_stored_before_needed_s": ", ".join(f"{x:.1f}" for x in margins)})
    notes += [
        "to_playable: from the last upload byte to status `playable` (the EVENT playlists of the two lowest rungs and the "
        "first audio segments); watched early: the next chunks' margin is when a viewer who pressed play at `playable` "
        "reaches the chunk minus when its low rungs were stored (negative: a stall); to_complete: to `ready` (VOD playlists of every rung, poster and storyboard)",
        "workers beside each other on this 2-core machine share its cores: 2 and 3 local workers cannot be faster than 1",
        "projection: each worker a machine like this one running the jobs as long as they took here with one worker; "
        "one-job time divided by the workers is what perfect scaling would give; `planned for N`: ingest cut the chunks "
        "for N workers (LECTERN_PLAN_WORKERS), run here on one; the target is judged on the plan for the workers projected",
    ]
    targets += [
        target("worst time to playable, s", round(worst_playable, 1), "< 60", worst_playable < 60),
        target("a viewer who starts at `playable` never catches up with the encoder: worst margin of the next chunks, s",
               None if worst_margin is None else round(worst_margin, 1), "> 0", worst_margin is not None and worst_margin > 0),
        target("projected time to complete / (one-job time / workers), 8 and 32 workers, chunks planned for them", None, "<= 1.15",
               projection_ok),
    ]
    return {"title": "Time to playable: chunked lectures (720p lecture material)", "rows": q_rows + rows, "notes": notes,
            "targets": targets}


if __name__ == "__main__":
    main(run, "playable")
