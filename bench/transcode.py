"""Transcode: the same 1080p30 source and the same ladder and x264 settings through
Lectern's worker (the real path: tus upload, probe, job, pipeline, stored HLS) and
through one ffmpeg process (decode once, split, scale, libx264, -f hls). Reports wall
and CPU seconds, peak RSS, and SSIM/PSNR of every rung against the source.

The source is made reproducibly from the real samples of tests/media (a screencast with
webcam, Big Buck Bunny, a phone clip and a rocket launch, each fitted into 1920x1080 at
30 fps and looped to the length), so it mixes screen content, animation and camera.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Lectern, main, machine_notes, ratio, target, tus_upload, wait_lecture_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("LECTERN_MEDIA_DIR", "/var/tmp/lectern-media"))
PARTS = [
    "good/screencast_webcam_h264_aac_720p.mp4",
    "good/bbb_h264_aac51_720p_5s.mp4",
    "legacy/phone_android9_h264_aac_1080p_vfr.mp4",
    "good/rocket_launch_vp8_vorbis_640x360.webm",
]
# Lectern's ladder for a 1920x1080 source (ingest/src/ladder.rs): height, kbps.
LADDER = [(1080, 5000), (720, 2800), (480, 1400), (360, 800), (240, 400)]
GOP_SECS, SEGMENT_SECS, FPS = 2, 6, 30


def fetch_parts():
    folders = sorted({p.split("/")[0] for p in PARTS})
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_media.py"), str(MEDIA), "--only", ",".join(folders)],
                   check=True, stdout=subprocess.DEVNULL)
    return [MEDIA / p for p in PARTS]


def make_source(path, seconds, width=1920, height=1080, reencode=True):
    """The real samples fitted into WIDTHxHEIGHT p30 + 48 kHz stereo, concatenated,
    encoded at high quality (CRF 14, 2 s GOPs) and looped to `seconds`."""
    if path.exists():
        return path
    parts = fetch_parts()
    path.parent.mkdir(parents=True, exist_ok=True)
    chain = []
    for i in range(len(parts)):
        chain.append(f"[{i}:v]fps={FPS},scale={width}:{height}:force_original_aspect_ratio=decrease,"
                     f"pad={width}:{height}:-1:-1,setsar=1,format=yuv420p[v{i}];"
                     f"[{i}:a]aformat=sample_rates=48000:channel_layouts=stereo[a{i}]")
    joined = "".join(f"[v{i}][a{i}]" for i in range(len(parts)))
    graph = ";".join(chain) + f";{joined}concat=n={len(parts)}:v=1:a=1[v][a]"
    once = path.with_suffix(".once.mkv")
    inputs = [a for p in parts for a in ("-i", str(p))]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
                    "-c:v", "libx264", "-preset", "fast", "-crf", "14", "-g", "60", "-c:a", "flac", str(once)], check=True)
    tmp = path.with_suffix(".part.mp4")
    # Quality is measured frame against frame, so that source is encoded again into
    # one clean constant-rate stream; a long source for timing only copies the video
    # (30 minutes in seconds), whose loop joins may jitter by a frame.
    video = ["-c:v", "libx264", "-preset", "fast", "-crf", "14", "-g", "60", "-r", str(FPS), "-pix_fmt", "yuv420p"] \
        if reencode else ["-c:v", "copy"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(once), "-t", str(seconds), *video,
                    "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart", str(tmp)], check=True)
    once.unlink()
    tmp.rename(path)
    return path


def rung_size(height):
    return (round(1920 * height / 1080 / 2) * 2, height)


def run_ffmpeg(source, out, ladder):
    """The one-process ffmpeg ladder with Lectern's x264 settings; (wall, cpu, peak MiB)."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(ladder)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";" + ";".join(
        f"[s{i}]scale={rung_size(h)[0]}:{rung_size(h)[1]}[v{i}]" for i, (h, _) in enumerate(ladder))
    args = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter_complex", graph]
    for i, (h, kbps) in enumerate(ladder):
        args += ["-map", f"[v{i}]", f"-c:v:{i}", "libx264", f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps}k",
                 f"-bufsize:v:{i}", f"{kbps * 2}k"]
    gop = GOP_SECS * FPS
    args += ["-preset", "veryfast", "-x264-params", "rc-lookahead=5", "-profile:v", "high", "-g", str(gop), "-keyint_min", "1", "-sc_threshold", "0",
             "-flags", "+cgop", "-map", "0:a", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
             "-f", "hls", "-hls_time", str(SEGMENT_SECS), "-hls_playlist_type", "vod",
             "-hls_segment_filename", str(out / "v%v" / "seg_%05d.ts"),
             "-var_stream_map", " ".join(f"v:{i},name:{h}" for i, (h, _) in enumerate(ladder)) + f" a:0,name:audio",
             "-master_pl_name", "master.m3u8", str(out / "v%v" / "index.m3u8")]
    return timed(args)


def timed(args):
    started = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - started
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[0]} failed: {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_lectern(lectern_bin, source, work, ladder="fixed"):
    """Lectern's worker inside `lectern serve`: CPU is the process's CPU from the last
    upload byte to ready (the upload itself is measured apart); peak RSS is the process's.
    The fixed ladder is what ffmpeg is compared with (the same rungs at the same rates);
    `per-title`, Lectern's default, adds the complexity probe before the job."""
    data = work / ("lectern-data" if ladder == "fixed" else f"lectern-data-{ladder}")
    shutil.rmtree(data, ignore_errors=True)
    with Lectern(lectern_bin, data, env={"RUST_LOG": "info", "LECTERN_LADDER": ladder}) as lec:
        owner = Api.signup(lec.url, "owner")
        course = owner.post("/api/courses", {"title": "Transcode bench"})
        lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": "1080p"})
        tus_upload(owner, lecture["id"], source)
        before = lec.stats()
        started = time.time()
        wait_lecture_ready(owner, lecture["id"], timeout=3600)
        wall = time.time() - started
        after = lec.stats()
        assets = sorted((data / "objects" / "assets").iterdir(), key=lambda p: p.stat().st_mtime)
        # The pipeline runs in a fenced child beside the server: both at their peaks
        # at once is the bound on what the transcode holds.
        rss = after["peak_rss_mib"] + after["children_peak_rss_mib"]
        return wall, after["cpu_s"] - before["cpu_s"], rss, assets[-1]


QUALITY_RE = re.compile(r"Parsed_(ssim|psnr)_(\d+).*?(?:All|average):([0-9.inf]+)")


def quality(rendition, source, height, source_height):
    """SSIM and PSNR of one rendition against the source, two ways:
    - at the source's size (the rendition upscaled with bicubic, as a screen shows it):
      what a viewer gets, and the metric the target uses;
    - at the rung's size, against the source downscaled by ffmpeg's bicubic scaler. This
      one favours ffmpeg: its rung went through that very scaler, so only its encoding
      loss counts, while any other scaler's differences count as error.
    Frames are paired by index (both streams restamped N/FPS): the outputs keep every
    source frame at a constant rate, and pairing by each muxer's own timestamps
    mismatched frames (a 15 dB PSNR error on the same files)."""
    w, h = rung_size(height)
    sw, sh = rung_size(source_height)
    graph = (f"[0:v]setpts=N/{FPS}/TB,split=3[d0][d1][up];[up]scale={sw}:{sh}:flags=bicubic,split[u0][u1];"
             f"[1:v]setpts=N/{FPS}/TB,split[s0][s1];[s0]split[sf0][sf1];"
             f"[s1]scale={w}:{h}:flags=bicubic,split[r0][r1];"
             f"[u0][sf0]ssim;[u1][sf1]psnr;[d0][r0]ssim;[d1][r1]psnr")
    p = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(rendition), "-i", str(source), "-filter_complex", graph,
                        "-f", "null", "-"], capture_output=True, text=True)
    found = sorted(QUALITY_RE.findall(p.stderr), key=lambda m: int(m[1]))
    values = [float(v) if v != "inf" else None for _, _, v in found]
    if len(values) != 4:
        raise RuntimeError(f"quality of {rendition}: expected 4 measures, got {found}: {p.stderr[-1500:]}")
    return {"ssim": values[0], "psnr": values[1], "ssim_at_rung": values[2], "psnr_at_rung": values[3]}


def frame_count(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[0]) if out.stdout.strip() else None


def run(quick, lectern_bin, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    # The quick run: a 4 s 640x360 source, whose ladder is Lectern's two lowest rungs.
    seconds, (width, height) = (4, (640, 360)) if quick else (60, (1920, 1080))
    source = make_source(work / f"source_{height}p30_{seconds}s.mp4", seconds, width, height)
    ladder = [r for r in LADDER if r[0] <= height]
    notes = machine_notes() + [
        f"source: {seconds} s {width}x{height}p30 made from real samples (tests/media); ladder "
        + ", ".join(f"{h}p@{k}k" for h, k in ladder) + "; x264 veryfast with rc-lookahead 5 (both), 2 s closed GOPs, VBV 2 s, high profile; AAC 128k",
        "Lectern CPU/wall: `lectern serve` from the last upload byte to ready (probe, job, pipeline, storing, "
        "poster and storyboard included, the fenced child processes' CPU with them); ffmpeg: the whole process "
        "(no poster/storyboard)",
        "Lectern peak RSS: the server's peak plus the largest fenced child's (the pipeline runs in one)",
    ]
    if quick:
        notes.append("quick run: 4 s 360p source, numbers not meaningful")
    shutil.rmtree(work / "ffmpeg-out", ignore_errors=True)
    ff_wall, ff_cpu, ff_rss = run_ffmpeg(source, work / "ffmpeg-out", ladder)
    lx_wall, lx_cpu, lx_rss, asset = run_lectern(lectern_bin, source, work)
    rows = [
        {"system": "ffmpeg", "wall_s": round(ff_wall, 1), "cpu_s": round(ff_cpu, 1), "peak_rss_mib": round(ff_rss)},
        {"system": "lectern", "wall_s": round(lx_wall, 1), "cpu_s": round(lx_cpu, 1), "peak_rss_mib": round(lx_rss)},
        {"system": "lectern / ffmpeg", "wall_s": ratio(lx_wall, ff_wall), "cpu_s": ratio(lx_cpu, ff_cpu),
         "peak_rss_mib": ratio(lx_rss, ff_rss)},
    ]
    if not quick:
        pt_wall, pt_cpu, pt_rss, _ = run_lectern(lectern_bin, source, work, ladder="per-title")
        rows.append({"system": "lectern, per-title ladder (default; probe included)", "wall_s": round(pt_wall, 1),
                     "cpu_s": round(pt_cpu, 1), "peak_rss_mib": round(pt_rss)})
    ssim_ok = True
    lectern_rungs = {int(re.sub(r"\D", "", d.name)): d for d in asset.iterdir() if d.is_dir() and d.name.startswith("v")}
    for h, kbps in ladder:
        ours = lectern_rungs.get(h)
        theirs = work / "ffmpeg-out" / f"v{h}" / "index.m3u8"
        if ours is None:
            notes.append(f"lectern made no {h}p rung (its ladder: {sorted(lectern_rungs)})")
            continue
        frames = {name: frame_count(p) for name, p in (("lectern", ours / "index.m3u8"), ("ffmpeg", theirs), ("source", source))}
        if len(set(frames.values())) > 1:
            notes.append(f"{h}p: frame counts differ {frames}; index pairing drifts after the first difference")
        q_l = quality(ours / "index.m3u8", source, h, height)
        q_f = quality(theirs, source, h, height)
        bytes_l = sum(f.stat().st_size for f in ours.glob("*.ts"))
        bytes_f = sum(f.stat().st_size for f in theirs.parent.glob("*.ts"))
        d = None if q_l["ssim"] is None or q_f["ssim"] is None else round(q_l["ssim"] - q_f["ssim"], 4)
        ssim_ok &= d is not None and d >= -0.005
        rows.append({"system": f"{h}p rung", "lectern_ssim": q_l["ssim"], "ffmpeg_ssim": q_f["ssim"], "ssim_diff": d,
                     "lectern_psnr": q_l["psnr"], "ffmpeg_psnr": q_f["psnr"],
                     "lectern_ssim_at_rung": q_l["ssim_at_rung"], "ffmpeg_ssim_at_rung": q_f["ssim_at_rung"],
                     "lectern_kbps": round(bytes_l * 8 / seconds / 1000), "ffmpeg_kbps": round(bytes_f * 8 / seconds / 1000)})
    # The AAC rendition: the same bit rate, so what differs is the MPEG-TS around it.
    ours_audio, theirs_audio = asset / "audio", work / "ffmpeg-out" / "vaudio"
    if ours_audio.is_dir() and theirs_audio.is_dir():
        kbps = lambda d: round(sum(f.stat().st_size for f in d.glob("*.ts")) * 8 / seconds / 1000)  # noqa: E731
        rows.append({"system": "audio (AAC 128k)", "lectern_kbps": kbps(ours_audio), "ffmpeg_kbps": kbps(theirs_audio)})
    targets = [
        target("CPU seconds lectern/ffmpeg", ratio(lx_cpu, ff_cpu), "<= 0.9", lx_cpu <= 0.9 * ff_cpu),
        target("SSIM (at the source's size) within 0.005 of ffmpeg on every rung", None, "diff >= -0.005", ssim_ok),
        target("peak RSS, MiB (full ladder)", lx_rss, "<= 400", lx_rss <= 400),
    ]
    return {"title": "Transcode: Lectern's worker vs one ffmpeg process", "rows": rows, "notes": notes, "targets": targets}


if __name__ == "__main__":
    main(run, "transcode")
