"""Originals in cold storage: an original no transcode read for LECTERN_COLD_AFTER_SECS
moves to the cold tier (the cold folder in the embedded world, a cold bucket in the
distributed one), the studio sees where it is, and transcoding the lecture again
brings it back and succeeds."""
import json
import os
import subprocess
import time

from conftest import COLD_BUCKET, WORLD, Api, Server, cold_storage_env


def cold_server(data_dir):
    return Server(data_dir, env=cold_storage_env(data_dir, 2)).start()


def where(server, key):
    """Which tiers hold `key`, read from the backends themselves."""
    if WORLD != "distributed":
        return {tier for tier in ("objects", "cold") if (server.data_dir / tier / key).is_file()}
    import boto3
    s3 = boto3.client("s3", endpoint_url=os.environ["LECTERN_TEST_S3_ENDPOINT"], region_name="us-east-1")
    found = set()
    for tier, bucket in (("objects", server.world["_BUCKET"]), ("cold", COLD_BUCKET)):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{server.world['_PREFIX']}/{key}")
        if listed.get("KeyCount", 0):
            found.add(tier)
    return found


def wait_tier(owner, lecture_id, tier, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        lec = owner.ok(owner.get(f"/api/lectures/{lecture_id}"))
        if lec.get("original_tier") == tier:
            return lec
        time.sleep(0.25)
    raise AssertionError(f"the original stayed {lec.get('original_tier')}, not {tier}")


def plays(server, api, lecture_id):
    grant = api.playback(lecture_id)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets",
         "-of", "json", server.url + grant["url"]], capture_output=True, text=True, timeout=120)
    streams = json.loads(probe.stdout or "{}").get("streams", [])
    return {s["codec_type"] for s in streams if int(s.get("nb_read_packets", 0)) > 0}


def test_an_idle_original_goes_cold_and_comes_back_for_a_new_transcode(tmp_path, lectern_bin, synth):
    server = cold_server(tmp_path / "data")
    try:
        owner = Api.signup(server.url, "owner")
        course = owner.course(title="Archive")
        lecture = owner.lecture(course["id"], "Kept cold")
        url = owner.upload(lecture["id"], synth.long_720p(8))
        key = "uploads/" + url.rstrip("/").rsplit("/", 1)[1]
        done, _ = owner.wait_lecture(lecture["id"])
        assert done["status"] == "ready", done

        assert wait_tier(owner, lecture["id"], "cold")["status"] == "ready"
        assert where(server, key) == {"cold"}
        # Students still play the renditions, which stay hot.
        assert plays(server, owner, lecture["id"]) >= {"video", "audio"}

        r = owner.post("/api/transcodes", json={"lecture_id": lecture["id"]})
        assert r.status_code == 202, r.text
        assert r.json() == {"lecture_id": lecture["id"], "status": "processing"}
        # Work under way is not started twice, and its original is not cooled meanwhile.
        again = owner.post("/api/transcodes", json={"lecture_id": lecture["id"]})
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict", again.text
        seen = []
        deadline = time.time() + 240
        while time.time() < deadline:
            lec = owner.ok(owner.get(f"/api/lectures/{lecture['id']}"))
            if lec["status"] in ("processing", "playable"):
                seen.append(lec.get("original_tier"))
            if lec["status"] in ("ready", "failed"):
                break
            time.sleep(0.2)
        assert lec["status"] == "ready", lec
        # Cold until brought back, then hot for as long as the transcode runs.
        tiers = [t for i, t in enumerate(seen) if i == 0 or seen[i - 1] != t]
        assert tiers in (["hot"], ["cold", "hot"]), seen
        assert plays(server, owner, lecture["id"]) >= {"video", "audio"}
        # Idle again, it goes back to the cold tier.
        wait_tier(owner, lecture["id"], "cold")
        assert where(server, key) == {"cold"}
    finally:
        server.stop()


def test_only_the_owner_transcodes_a_finished_lecture_again(tmp_path, lectern_bin):
    server = cold_server(tmp_path / "data")
    try:
        owner = Api.signup(server.url, "owner")
        other = Api.signup(server.url, "owner")
        student = Api.signup(server.url, "student")
        course = owner.course(title="Mine")
        lecture = owner.lecture(course["id"], "No file yet")
        body = {"lecture_id": lecture["id"]}
        cases = [
            (student, body, 403, "forbidden"),
            (other, body, 403, "forbidden"),
            (owner, body, 409, "conflict"),
            (owner, {"lecture_id": "00000000-0000-4000-8000-000000000000"}, 404, "not_found"),
            (owner, {"lecture_id": "../etc"}, 404, "not_found"),
            (owner, {"lecture": lecture["id"]}, 400, "invalid"),
            (owner, [lecture["id"]], 400, "invalid"),
        ]
        for who, sent, status, code in cases:
            r = who.post("/api/transcodes", json=sent)
            assert r.status_code == status and r.json()["error"]["code"] == code, (sent, r.text)
        anonymous = Api(server.url).post("/api/transcodes", json=body)
        assert anonymous.status_code == 401
        assert "original_tier" not in owner.ok(owner.get(f"/api/lectures/{lecture['id']}"))
    finally:
        server.stop()
