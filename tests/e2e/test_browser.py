"""player-web in Debian's Chromium (playwright-core): the owner's studio flow (with
attachments, and a webhook endpoint whose delivery log shows the student's enrollment
signed and delivered on a retry), the student's find-enroll-watch flow (adaptive
levels, quality switch, resume, the course's materials downloaded) and the
not-enrolled student, a student's ~30 s of viewing (with a seek and a pause) read back
by the owner as watch time, retention and the studio's charts, with screenshots kept as
test artifacts; and a player that
outlives its playback token."""
import json
import os
import subprocess

import pytest

from conftest import ARTIFACTS, ROOT, WORLD, Api, Server, cold_storage_env
from test_media import transcode

WEB = ROOT / "player-web"


@pytest.fixture
def web_server(tmp_path, lectern_bin):
    if not (WEB / "dist" / "index.html").exists():
        pytest.fail("player-web is not built: run `npm run build` in player-web (scripts/test.sh does)")
    # Originals go cold soon, so the studio's archive flow is seen too.
    # Webhooks go to the flow's receiver on loopback, and are retried within a second.
    env = {"LECTERN_WEB_DIR": str(WEB / "dist"), **cold_storage_env(tmp_path / "data", 10),
           "LECTERN_WEBHOOK_ALLOW_PRIVATE": "true", "LECTERN_WEBHOOK_RETRY_SECS": "1,1,1"}
    s = Server(tmp_path / "data", env=env).start()
    yield s
    s.stop()


def test_web_app_is_served_beside_the_api_with_security_headers(web_server):
    import requests
    index = requests.get(web_server.url + "/")
    assert index.status_code == 200 and "<title>Lectern</title>" in index.text
    csp = index.headers["Content-Security-Policy"]
    for directive in ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'self'", "media-src 'self' blob:"]:
        assert directive in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    assert index.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    api = requests.get(web_server.url + "/api/nothing")
    assert api.json()["error"]["code"] == "not_found" and api.headers["X-Content-Type-Options"] == "nosniff"


def test_owner_student_and_outsider_flows_in_chromium(web_server, samples, tmp_path):
    shots = ARTIFACTS / f"screenshots-{WORLD}"
    big = tmp_path / "long_recording.mp4"  # large enough to pause mid-way; its content does not matter
    with open(big, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    out = subprocess.run(
        ["node", str(WEB / "tests" / "flows.mjs"), web_server.url, str(samples / "good/gnome_screencast_vp8_1024x768_37s.webm"),
         str(shots), str(big), str(samples / "good/rocket_launch_vp8_vorbis_640x360.webm")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-1000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] and len(result["levels"]) >= 2
    for name in ["catalog", "watch", "watch-captions", "studio", "studio-captions", "studio-attachments", "studio-cold", "search-transcript", "course-attachments", "not-enrolled-phone", "studio-webhooks", "studio-analytics"]:
        assert (shots / f"{name}.png").stat().st_size > 10_000


def test_a_player_outlives_its_playback_token_in_chromium(tmp_path, samples, lectern_bin):
    if not (WEB / "dist" / "index.html").exists():
        pytest.fail("player-web is not built: run `npm run build` in player-web (scripts/test.sh does)")
    ttl = 8
    server = Server(tmp_path / "data", env={"LECTERN_WEB_DIR": str(WEB / "dist"), "LECTERN_PLAYBACK_TOKEN_TTL": str(ttl)}).start()
    try:
        owner = Api.signup(server.url, "owner")
        lecture, _ = transcode(owner, samples / "good/gnome_screencast_vp8_1024x768_37s.webm", "Longer than a token")
        assert lecture["status"] == "ready", lecture
        session = json.dumps({"token": owner.token, "user": owner.ok(owner.get("/api/me"))})
        out = subprocess.run(["timeout", "300", "node", str(WEB / "tests" / "renewal.mjs"), server.url, session, lecture["id"], str(ttl)],
                             capture_output=True, text=True)
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-1000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["firstNow"] == 403, report
    # After the first token expired: a playlist and segments of the new rung, all
    # answered, with a renewed token.
    after = report["after"]
    assert any(a["file"].endswith("index.m3u8") for a in after) and any(a["file"].endswith(".ts") for a in after), report
    assert all(a["status"] in (200, 206) and a["renewed"] for a in after), report
    assert not [e for e in report["errors"] if "(fatal)" in e], report
