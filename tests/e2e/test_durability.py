"""Crashes and separate processes: a job running when the process dies is finished
after the restart, and the roles run as separate processes over the shared data."""
import time

import requests

from conftest import Api, Server
from test_media import check_ladder, decode_all, transcode


def test_kill_during_transcode_then_restart_finishes_the_job(tmp_path, lectern_bin, synth):
    source = synth.long_720p(40)
    server = Server(tmp_path / "data").start()
    try:
        owner = Api.signup(server.url, "owner")
        course = owner.course()
        lec = owner.lecture(course["id"])
        owner.upload(lec["id"], source)
        owner.wait_lecture(lec["id"], statuses=("processing",))
        deadline = time.time() + 120
        while time.time() < deadline:
            now = owner.ok(owner.get(f"/api/lectures/{lec['id']}"))
            if now["progress_percent"] >= 5:
                break
            assert now["status"] == "processing", now
            time.sleep(0.2)
        # Nothing partial is playable while it runs.
        assert owner.post(f"/api/lectures/{lec['id']}/playback").status_code == 409
        server.kill()
        server.start()
        done, _ = owner.wait_lecture(lec["id"], timeout=300)
        assert done["status"] == "ready", done
        assert abs(done["duration_secs"] - 40) < 0.5
        url, _ = check_ladder(owner, lec["id"], 1280, 720)
        decode_all(url)
        log = server.log_path.read_text()
        assert "attempt=2" in log, "the job was not delivered again after the crash"
    finally:
        server.stop()


def test_roles_as_separate_processes(tmp_path, lectern_bin, samples):
    data = tmp_path / "data"
    catalog = Server(data, role="catalog").start()
    ingest = Server(data, role="ingest").start()
    worker = Server(data, role="worker").start()
    try:
        owner = Api.signup(catalog.url, "owner")
        course = owner.course()
        lec = owner.lecture(course["id"])
        uploader = Api(ingest.url, owner.token)
        uploader.upload(lec["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
        done, _ = owner.wait_lecture(lec["id"])
        assert done["status"] == "ready", done
        url = catalog.url + owner.playback(lec["id"])["url"]
        assert requests.get(url).status_code == 200
        # Each role serves only its own routes.
        assert requests.get(ingest.url + "/api/courses", headers=owner.headers()).status_code == 404
        assert requests.options(catalog.url + "/api/uploads").status_code == 404
        assert requests.get(worker.url + "/readyz").json()["backends"] == {"storage": "ok", "queue": "ok"}
    finally:
        for s in (worker, ingest, catalog):
            s.stop()


def test_a_relative_data_dir_works_from_its_working_directory(tmp_path, lectern_bin, samples):
    """The README's run command uses ./data: paths handed to GStreamer must not depend on it."""
    server = Server(tmp_path / "data", env={"LECTERN_DATA_DIR": "data"}, cwd=tmp_path).start()
    try:
        owner = Api.signup(server.url, "owner")
        done, _ = transcode(owner, samples / "audio_only/chime_opus_2s.webm")
        assert done["status"] == "ready", done
    finally:
        server.stop()
