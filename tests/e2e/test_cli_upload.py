"""`lectern upload`, the owners' command-line client, against a real Lectern: three real
files into one course, the client killed in the middle of the second and run again,
end as three ready, playable lectures in file order; a wrong password is a clear error;
a folder goes in natural order."""
import json
import os
import shutil
import signal
import subprocess
import threading

from conftest import BIN, Api, Server

# Real media of three kinds, small enough for CI: VP8/Vorbis, H.264/AAC 5.1, Opus alone.
FILES = {
    "01 rocket launch.webm": "good/rocket_launch_vp8_vorbis_640x360.webm",
    "02 big buck bunny.mp4": "good/bbb_h264_aac51_720p_5s.mp4",
    "03 chime.webm": "audio_only/chime_opus_2s.webm",
}
CHUNK = 64 * 1024


def client_env(server, tmp_path, **extra):
    """Only what the client needs: no LECTERN_* of the test's own environment."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LECTERN_SERVER": server.url}
    env.update(extra)
    return env


def upload_args(course_id, state, *rest):
    return [str(BIN), "upload", "--course", course_id, "--state", str(state), "--json", *map(str, rest)]


def events_of(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_until_killed(args, env, stop_when, timeout=120):
    """Runs the client, reading its JSON lines, and SIGKILLs it at the first event
    `stop_when` accepts. Returns the events read."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    events = []
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            events.append(json.loads(line))
            if stop_when(events[-1]):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, events)
    return events


def course_lectures(owner, course_id):
    return owner.ok(owner.get(f"/api/courses/{course_id}"))["lectures"]


def assert_plays(server, owner, lecture_id):
    grant = owner.playback(lecture_id)
    master = owner.get(grant["url"])
    assert master.status_code == 200 and master.text.startswith("#EXTM3U"), master.text[:200]
    first = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
    media = owner.get(grant["url"].rsplit("/", 1)[0] + "/" + first)
    assert media.status_code == 200 and "#EXTINF" in media.text, media.text[:200]


def test_an_interrupted_upload_of_three_files_resumes_and_ends_with_three_ready_lectures(server, owner, samples, tmp_path):
    folder = tmp_path / "lectures"
    folder.mkdir()
    files = []
    for name, sample in FILES.items():
        files.append(folder / name)
        shutil.copyfile(samples / sample, files[-1])
    course = owner.course(title="Uploaded from the command line")
    state = tmp_path / "state" / "uploads.json"
    env = client_env(server, tmp_path, LECTERN_PASSWORD=owner.password)
    args = upload_args(course["id"], state, "--email", owner.email, "--chunk-size", CHUNK, *files)
    second_size = files[1].stat().st_size

    # 256 KiB/s: the second file (1 MiB) takes about 4 s, and is killed half-way.
    first = run_until_killed(
        [*args, "--limit-rate", "256K"], env,
        lambda e: e["event"] == "progress" and e["index"] == 2 and e["bytes_sent"] >= second_size // 2,
    )
    created = [e for e in first if e["event"] == "created"]
    assert [e["title"] for e in created] == [f.stem for f in files], first
    assert [e["index"] for e in first if e["event"] == "uploaded"] == [1], first

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr
    second = events_of(again.stdout)
    ids = [e["lecture_id"] for e in created]
    assert [e["lecture_id"] for e in second if e["event"] == "reused"] == ids, second
    # The first file is not sent again; the second goes on from where the server has it.
    assert [e["index"] for e in second if e["event"] == "skipped"] == [1], second
    resumed = {e["index"]: e["resumed_from"] for e in second if e["event"] == "uploading"}
    assert set(resumed) == {2, 3}, second
    assert 0 < resumed[2] < second_size and resumed[2] % CHUNK == 0, resumed
    assert resumed[3] == 0
    summary = second[-1]
    assert summary == {"event": "summary", "files": 3, "uploaded": 2, "ready": 3, "failed": 0, "exit_code": 0}, second

    lectures = sorted(course_lectures(owner, course["id"]), key=lambda lec: lec["position"])
    assert [lec["id"] for lec in lectures] == ids
    assert [lec["title"] for lec in lectures] == [f.stem for f in files]
    assert [lec["status"] for lec in lectures] == ["ready"] * 3, lectures
    for lecture in lectures:
        assert_plays(server, owner, lecture["id"])


def test_a_wrong_password_is_a_clear_error_and_changes_nothing(server, owner, samples, tmp_path):
    course = owner.course(title="Not for strangers")
    env = client_env(server, tmp_path, LECTERN_PASSWORD="not the password")
    args = upload_args(course["id"], tmp_path / "state.json", "--email", owner.email, samples / FILES["03 chime.webm"])
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "email or password is wrong" in r.stderr
    assert events_of(r.stdout) == [{"event": "error", "message": "email or password is wrong"}]
    assert course_lectures(owner, course["id"]) == []


def test_a_folder_goes_in_natural_order_and_a_token_signs_in(server, owner, samples, tmp_path):
    week = tmp_path / "week 1"
    week.mkdir()
    for name in ["lecture 10.webm", "lecture 2.webm", ".lecture 1.webm"]:
        shutil.copyfile(samples / FILES["03 chime.webm"], week / name)
    (week / "notes.txt").write_text("not a lecture")
    course = owner.course(title="A folder")
    env = client_env(server, tmp_path, LECTERN_TOKEN=owner.token)
    r = subprocess.run(upload_args(course["id"], tmp_path / "state.json", "--no-wait", week),
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert events_of(r.stdout)[-1]["uploaded"] == 2
    titles = [lec["title"] for lec in sorted(course_lectures(owner, course["id"]), key=lambda lec: lec["position"])]
    assert titles == ["lecture 2", "lecture 10"]
    # Another owner may see the published course but not add to it: refused up front.
    other = Api.signup(server.url, "owner")
    r = subprocess.run(upload_args(course["id"], tmp_path / "other.json", week),
                       env=client_env(server, tmp_path, LECTERN_TOKEN=other.token), capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "sign in as its owner" in r.stderr, r.stderr


def test_an_access_token_that_expires_during_the_upload_is_renewed(tmp_path, lectern_bin, samples):
    # Tokens live 2 s; the file takes about 5 s at 8 KiB/s, and is followed afterwards.
    server = Server(tmp_path / "data", env={"LECTERN_ACCESS_TOKEN_TTL": "2"}).start()
    try:
        owner = Api.signup(server.url, "owner")
        course = owner.course(title="A slow uplink")
        env = client_env(server, tmp_path, LECTERN_PASSWORD=owner.password)
        args = upload_args(course["id"], tmp_path / "state.json", "--email", owner.email,
                           "--limit-rate", "8K", "--chunk-size", "8K", samples / FILES["03 chime.webm"])
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        events = events_of(r.stdout)
        assert events[-1]["ready"] == 1, events
        uploaded = next(e for e in events if e["event"] == "uploaded")
        assert uploaded["secs"] > 3, uploaded
    finally:
        server.stop()
