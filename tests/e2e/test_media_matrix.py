"""The media matrix: every legacy and odd real sample of tests/media/manifest.json
(`legacy/…`, fetched from the package registries) goes through the real pipeline of one
server. Each ends ready (and ffmpeg decodes the whole ladder) or failed with a reason,
as the manifest expects; none stays processing and the worker never restarts."""
import json
import os
import time
from pathlib import Path

import pytest

from conftest import ROOT, WORLD, Api
import requests

from test_media import decode_all, master_of, media_segments, variants

MANIFEST = json.loads((ROOT / "tests" / "media" / "manifest.json").read_text())
LEGACY = [e for e in MANIFEST if e["file"].startswith("legacy/")]
# By hand: LECTERN_MATRIX_ONLY=avi,dv runs the samples whose names contain one of these.
if os.environ.get("LECTERN_MATRIX_ONLY"):
    LEGACY = [e for e in LEGACY if any(w in e["file"] for w in os.environ["LECTERN_MATRIX_ONLY"].split(","))]

pytestmark = pytest.mark.skipif(WORLD != "embedded", reason="the pipeline is the same in both worlds; run once")


@pytest.fixture(scope="module")
def legacy_samples(samples):
    import subprocess
    import sys
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_media.py"), str(samples), "--only", "legacy"], check=True)
    return samples


def test_every_legacy_sample_ends_ready_and_decodable_or_failed_with_a_reason(shared_server, legacy_samples):
    assert len(LEGACY) >= (1 if os.environ.get("LECTERN_MATRIX_ONLY") else 10), "the manifest lists the legacy samples"
    owner = Api.signup(shared_server.url, "owner")
    course = owner.course(title="Media matrix")
    pid = shared_server.proc.pid
    lectures = {}
    for entry in LEGACY:
        lecture = owner.lecture(course["id"], Path(entry["file"]).name[:190])
        owner.upload(lecture["id"], legacy_samples / entry["file"])
        lectures[entry["file"]] = lecture["id"]
    # Bounded: every sample is short, and a stuck pipeline would be stopped by the
    # watchdog long before this.
    deadline = time.time() + 60 * len(LEGACY)
    results = {}
    while time.time() < deadline and len(results) < len(lectures):
        for name, lid in lectures.items():
            if name in results:
                continue
            lec = owner.ok(owner.get(f"/api/lectures/{lid}"))
            if lec["status"] in ("ready", "failed"):
                results[name] = lec
        time.sleep(1)
    stuck = sorted(set(lectures) - set(results))
    assert not stuck, f"still processing: {stuck}"
    wrong = []
    for entry in LEGACY:
        lec = results[entry["file"]]
        if lec["status"] != entry["expect"]:
            wrong.append(f"{entry['file']} ({entry.get('kind')}): {lec['status']} {lec['failure_reason'] or ''}")
        elif lec["status"] == "failed":
            reason = lec["failure_reason"] or ""
            assert len(reason) > 10 and str(shared_server.data_dir) not in reason and "/scratch" not in reason, reason
        else:
            url, master, _ = master_of(owner, lec["id"])
            decode_all(url)
            assert lec["duration_secs"] and lec["duration_secs"] > 0
            # Every rendition's EXTINFs add up to the lecture (a bogus last-frame
            # timestamp once made one 1000 hours long).
            base = url.rsplit("/", 1)[0]
            for _, uri in variants(master):
                total = sum(d for d, _ in media_segments(requests.get(f"{base}/{uri}").text))
                assert abs(total - lec["duration_secs"]) < 1.5, (entry["file"], uri, total, lec["duration_secs"])
    assert not wrong, "\n".join(wrong)
    # One process did it all: no crash, no restart.
    assert shared_server.proc.poll() is None and shared_server.proc.pid == pid
    log = shared_server.log_path.read_text()
    assert "panicked" not in log, log[-3000:]
