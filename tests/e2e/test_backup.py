"""Backups of the embedded world (`lectern backup` / `lectern restore`): taken while a
lecture transcodes, restored into an empty data folder, where the lecture finishes and
plays. The distributed world is backed up with PostgreSQL's and S3's own tools
(docs/operations.md)."""
import json
import subprocess

import pytest

from conftest import BIN, WORLD, Api, Server


def lectern(env, *args):
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)


def test_a_backup_taken_while_a_lecture_transcodes_restores_and_plays(tmp_path, lectern_bin, synth):
    if WORLD != "embedded":
        pytest.skip("the distributed world is backed up with PostgreSQL's and S3's own tools")
    source = synth.long_720p(40)
    live = Server(tmp_path / "live").start()
    saved = tmp_path / "backup"
    try:
        owner = Api.signup(live.url, "owner")
        course = owner.course(title="Backed up")
        ready = owner.lecture(course["id"], "Done before the backup")
        owner.upload(ready["id"], source)
        assert owner.wait_lecture(ready["id"])[0]["status"] == "ready"
        midway = owner.lecture(course["id"], "In the works during the backup")
        owner.upload(midway["id"], source)
        during, _ = owner.wait_lecture(midway["id"], statuses=("processing", "playable", "ready", "failed"))
        assert during["status"] in ("processing", "playable"), during
        taken = lectern(live.env, "backup", "--to", str(saved))
        assert taken.returncode == 0, taken.stderr
        manifest = json.loads((saved / "lectern-backup.json").read_text())
        assert manifest["files"] > 0
        # A second backup never writes into the first.
        again = lectern(live.env, "backup", "--to", str(saved))
        assert again.returncode != 0 and "not empty" in again.stderr
    finally:
        live.stop()

    restored_dir = tmp_path / "restored"
    env = dict(live.env, LECTERN_DATA_DIR=str(restored_dir))
    put_back = lectern(env, "restore", "--from", str(saved))
    assert put_back.returncode == 0, put_back.stderr
    # Never over a data folder that has data.
    over = lectern(env, "restore", "--from", str(saved))
    assert over.returncode != 0 and "empty data folder" in over.stderr

    restored = Server(restored_dir).start()
    try:
        # The same keys: the owner's session and tokens still hold.
        same = Api(restored.url, owner.token)
        for lecture in (ready, midway):
            done, _ = same.wait_lecture(lecture["id"])
            assert done["status"] == "ready", done
            grant = same.playback(lecture["id"])
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets",
                 "-of", "json", restored.url + grant["url"]], capture_output=True, text=True, timeout=120)
            streams = json.loads(probe.stdout or "{}").get("streams", [])
            assert {s["codec_type"] for s in streams} >= {"video", "audio"}, probe.stderr
            assert all(int(s["nb_read_packets"]) > 0 for s in streams)
    finally:
        restored.stop()
