"""Per-title ladder (issue 8): the same real lecture material through Lectern twice, with
the fixed ladder (LECTERN_LADDER=fixed) and with the per-title ladder (the default), one
job each. For every rung: the bytes stored and SSIM/PSNR against the source scaled to
the rung (ffmpeg, bicubic, frames paired by index). Reports the bytes saved and each
kept rung's SSIM difference; a dropped rung is listed as such.

Sources (tests/media, real files): a GNOME screencast (1024x768, 15 fps, desktop and
windows moving), a talk (720p screencast with a webcam inset), and Big Buck Bunny as a
control that should keep the fixed ladder. --quick runs the talk only.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Lectern, machine_notes, main, target, tus_upload, wait_lecture_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("LECTERN_MEDIA_DIR", "/var/tmp/lectern-media"))
SOURCES = [
    ("talk", "good/screencast_webcam_h264_aac_720p.mp4", True),
    ("screencast", "good/gnome_screencast_vp8_1024x768_37s.webm", True),
    ("movie (control)", "good/bbb_h264_aac51_720p_5s.mp4", False),
]
QUALITY_RE = re.compile(r"Parsed_(ssim|psnr)_\d+.*?(?:All|average):([0-9.inf]+)")
SSIM_BOUND = 0.005


def fetch(files):
    folders = sorted({f.split("/")[0] for f in files})
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_media.py"), str(MEDIA), "--only", ",".join(folders)],
                   check=True, stdout=subprocess.DEVNULL)


def transcode(lectern_bin, data, source, ladder):
    """One upload through `lectern serve`; returns the recorded ladder, the asset folder
    and the seconds from the last upload byte to ready."""
    shutil.rmtree(data, ignore_errors=True)
    with Lectern(lectern_bin, data, env={"LECTERN_LADDER": ladder, "LECTERN_CHUNK_SECS": "0"}) as lec:
        owner = Api.signup(lec.url, "owner")
        course = owner.post("/api/courses", {"title": "Ladder bench"})
        lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": source.name})
        tus_upload(owner, lecture["id"], source)
        started = time.time()
        wait_lecture_ready(owner, lecture["id"], timeout=1800)
        wall = time.time() - started
        recorded = owner.get(f"/api/lectures/{lecture['id']}/ladder")
    asset = max((data / "objects" / "assets").iterdir(), key=lambda p: p.stat().st_mtime)
    return recorded, asset, wall


def rung_quality(asset, rung, source):
    playlist = asset / rung["name"] / "index.m3u8"
    size = sum(p.stat().st_size for p in (asset / rung["name"]).glob("*.ts"))
    graph = (f"[0:v]setpts=N/30/TB,split[a0][a1];[1:v]setpts=N/30/TB,scale={rung['width']}:{rung['height']}:flags=bicubic,"
             f"split[b0][b1];[a0][b0]ssim;[a1][b1]psnr")
    p = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(playlist), "-i", str(source), "-filter_complex", graph,
                        "-f", "null", "-"], capture_output=True, text=True)
    found = dict(QUALITY_RE.findall(p.stderr))
    if p.returncode != 0 or "ssim" not in found:
        raise RuntimeError(f"quality of {playlist}: {p.stderr[-1500:]}")
    return size, float(found["ssim"]), float(found["psnr"]) if found.get("psnr", "inf") != "inf" else None


def run(quick, lectern_bin, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    sources = SOURCES[:1] if quick else SOURCES
    fetch([f for _, f, _ in sources])
    rows, targets, notes = [], [], machine_notes()
    for label, file, screen in sources:
        source = MEDIA / file
        fixed, fixed_asset, fixed_wall = transcode(lectern_bin, work / "data-fixed", source, "fixed")
        fitted, fitted_asset, fitted_wall = transcode(lectern_bin, work / "data-per-title", source, "per-title")
        by_name = {r["name"]: r for r in fitted["rungs"]}
        choices = {c["name"]: c for c in fitted["report"]["rungs"]}
        total_fixed = total_fitted = 0
        worst = None
        for rung in fixed["rungs"]:
            f_size, f_ssim, f_psnr = rung_quality(fixed_asset, rung, source)
            total_fixed += f_size
            row = {"source": label, "rung": rung["name"], "fixed kbps": rung["video_kbps"], "fixed bytes": f_size,
                   "fixed SSIM": round(f_ssim, 4), "fixed PSNR": f_psnr and round(f_psnr, 2)}
            kept = by_name.get(rung["name"])
            if kept is None:
                row["per-title"] = choices[rung["name"]]["note"]
            else:
                size, ssim, psnr = rung_quality(fitted_asset, kept, source)
                total_fitted += size
                diff = ssim - f_ssim
                worst = diff if worst is None else min(worst, diff)
                encoding = f"CRF {kept['crf']} (at most {kept['video_kbps']} kbps)" if kept.get("crf") else \
                    f"{kept['video_kbps']} kbps"
                row.update({"per-title": encoding, "per-title bytes": size,
                            "bytes saved": f"{(1 - size / f_size) * 100:.1f} %", "per-title SSIM": round(ssim, 4),
                            "SSIM diff": round(diff, 4), "per-title PSNR": psnr and round(psnr, 2)})
            rows.append(row)
        saved = 1 - total_fitted / total_fixed
        rows.append({"source": label, "rung": "whole ladder", "fixed bytes": total_fixed, "per-title bytes": total_fitted,
                     "bytes saved": f"{saved * 100:.1f} %",
                     "per-title": f"probe {fitted['report']['probe_secs']:.1f} s; upload end to ready "
                                  f"{fitted_wall:.1f} s (fixed {fixed_wall:.1f} s)"})
        targets.append(target(f"{label}: worst kept rung's SSIM minus the fixed rung's", worst, f">= -{SSIM_BOUND}",
                              worst is not None and worst >= -SSIM_BOUND))
        if screen:
            targets.append(target(f"{label}: bytes saved against the fixed ladder (share)", round(saved, 3), "> 0.5",
                                  saved > 0.5))
        else:
            targets.append(target(f"{label}: bytes saved (a movie needs its fixed rates)", round(saved, 3),
                                  "about 0 (within 0.05)", abs(saved) <= 0.05))
    notes.append("One job per source (no chunking); SSIM is ffmpeg's `All` at the rung's size against the source "
                 "scaled with bicubic, frames paired by index. The per-title probe's own measurements are at "
                 "GET /api/lectures/{id}/ladder.")
    return {"title": "Per-title ladder: bytes saved at equal quality on lecture material", "rows": rows,
            "notes": notes, "targets": targets}


if __name__ == "__main__":
    main(run, "ladder")
