"""Lectern behind the real nginx, configured from deploy/nginx/lectern.conf.template:
nginx asks Lectern once per playback token what it grants and sends finished files from
the file store's folder itself; everything else (S3 in the distributed world, a refused
token) goes to Lectern, which answers X-Accel-Redirect or its error. Uploads, the API and
live events go through the same nginx."""
import email.utils
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

from conftest import ROOT, WORLD, Api, Server, free_port
from test_playback import token_asset

TEMPLATE = ROOT / "deploy" / "nginx" / "lectern.conf.template"


class Nginx:
    """An nginx master in the foreground with the deploy template included."""

    def __init__(self, work, upstream, objects, s3):
        self.work = Path(work)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        values = {"LECTERN_LISTEN": f"127.0.0.1:{self.port}", "LECTERN_UPSTREAM": upstream,
                  "LECTERN_OBJECTS": f"{objects}/", "LECTERN_S3": s3,
                  "LECTERN_CACHE": str(self.work / "grants")}
        # envsubst's rule: only the names given are replaced.
        site = re.sub(r"\$\{(LECTERN_[A-Z0-9]+)\}", lambda m: values[m.group(1)], TEMPLATE.read_text())
        (self.work / "lectern.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read Lectern's files
        (self.work / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {self.work}/nginx.pid;\n"
            f"error_log {self.work}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n access_log {self.work}/access.log;\n include {self.work}/lectern.conf;\n}}\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["nginx", "-p", str(self.work), "-e", str(self.work / "error.log"),
                                      "-c", str(self.work / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.work / "error.log").read_text()[-2000:])
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("nginx did not answer")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory, lectern_bin, samples):
    work = tmp_path_factory.mktemp("nginx")
    server = Server(work / "data", env={"PLAYBACK_DELIVERY": "nginx", "LECTERN_TRUST_FORWARDED": "true"}).start()
    s3 = os.environ.get("LECTERN_TEST_S3_ENDPOINT", "http://127.0.0.1:1").split("://", 1)[1]
    proxy = Nginx(work, f"127.0.0.1:{server.port}", work / "data" / "objects", s3).start()
    try:
        # Everything a teacher and a student do, through nginx only.
        owner = Api.signup(proxy.url, "owner")
        course = owner.course(title="Behind nginx")
        lecture = owner.lecture(course["id"], "Rocket")
        owner.upload(lecture["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm", chunk_size=256 << 10)
        done, _ = owner.wait_lecture(lecture["id"])
        assert done["status"] == "ready", done
        yield server, proxy, owner, course, lecture
    finally:
        proxy.stop()
        server.stop()


def first_uri(text):
    return [l for l in text.splitlines() if l and not l.startswith("#")][0]


def test_playback_bytes_come_from_nginx_after_lectern_checks_the_token(behind_nginx):
    server, proxy, owner, course, lecture = behind_nginx
    grant = owner.playback(lecture["id"])
    base = proxy.url + grant["url"].rsplit("/", 1)[0]
    asset = token_asset(grant["url"].split("/")[2])
    master = requests.get(base + "/master.m3u8")
    assert master.status_code == 200 and master.text.startswith("#EXTM3U")
    assert master.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert master.headers["Access-Control-Allow-Origin"] == "*"
    rung = first_uri(master.text)
    playlist = requests.get(f"{base}/{rung}")
    seg_url = f"{base}/{rung.rsplit('/', 1)[0]}/{first_uri(playlist.text)}"
    full = requests.get(seg_url)
    assert full.status_code == 200 and full.headers["Content-Type"] == "video/mp2t"
    assert full.content[0] == 0x47 and int(full.headers["Content-Length"]) == len(full.content)
    # Lectern's caching rule (public until the token expires) is kept by nginx.
    assert full.headers["Cache-Control"].startswith("public"), full.headers
    if full.headers["Cache-Control"] == "public":
        assert email.utils.parsedate_to_datetime(full.headers["Expires"]).timestamp() == grant["expires_at"]
    # The bytes are the stored object's, and nginx answers Range and conditional GETs.
    key = re.search(r"/play/[^/]+/(.+)$", seg_url).group(1)
    assert full.content == server.stored(f"assets/{asset}/{key}")
    part = requests.get(seg_url, headers={"Range": "bytes=188-375"})
    assert part.status_code == 206 and part.content == full.content[188:376]
    assert part.headers["Content-Range"] == f"bytes 188-375/{len(full.content)}"
    if "Last-Modified" in full.headers:
        since = requests.get(seg_url, headers={"If-Modified-Since": full.headers["Last-Modified"]})
        assert since.status_code == 304
    # Lectern's refusal passes through nginx unchanged; no byte of the file goes out.
    forged = seg_url.replace("/play/", "/play/A", 1)
    refused = requests.get(forged)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "bad_playback_token"
    # A real player reads the whole lecture through nginx.
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets",
                            "-of", "json", base + "/master.m3u8"], capture_output=True, text=True, timeout=120)
    streams = json.loads(probe.stdout)["streams"]
    assert {s["codec_type"] for s in streams} >= {"video", "audio"}, probe.stderr
    assert all(int(s["nb_read_packets"]) > 0 for s in streams)


def test_the_internal_locations_cannot_be_reached_from_outside(behind_nginx):
    server, proxy, owner, course, lecture = behind_nginx
    asset = token_asset(owner.playback(lecture["id"])["url"].split("/")[2])
    for path in [f"/_lectern/objects/assets/{asset}/master.m3u8", "/_lectern/objects/", "/_lectern/s3/x"]:
        r = requests.get(proxy.url + path)
        assert r.status_code == 404 and b"#EXTM3U" not in r.content, (path, r.status_code)
    # nginx resolves dot segments before choosing a location: this is Lectern's to answer.
    r = requests.get(proxy.url + "/_lectern/objects/../../keys/playback.key")
    assert server.playback_key() not in r.content
    # A client cannot ask Lectern to redirect it: the header is the upstream's to send.
    r = requests.get(proxy.url + "/healthz", headers={"X-Accel-Redirect": f"/_lectern/objects/assets/{asset}/master.m3u8"})
    assert r.status_code == 200 and b"#EXTM3U" not in r.content


def test_clients_are_told_apart_by_the_address_nginx_forwards(behind_nginx):
    server, proxy, owner, course, lecture = behind_nginx
    # Lectern trusts the last X-Forwarded-For entry, which nginx writes: a forged first
    # entry does not change whose failures are counted.
    email = f"limit-{os.urandom(4).hex()}@example.com"
    Api.signup(proxy.url, "student", email=email)
    codes = []
    for i in range(8):
        r = requests.post(proxy.url + "/api/auth/login", json={"email": email, "password": "wrong password 1"},
                          headers={"X-Forwarded-For": f"10.9.{i}.1"})
        codes.append(r.status_code)
    assert 429 in codes, codes


def test_live_events_pass_through_nginx(behind_nginx):
    server, proxy, owner, course, lecture = behind_nginx
    with connect(proxy.url.replace("http", "ws", 1) + "/api/events",
                 subprotocols=["bearer", owner.token], open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello", hello


def route_count(server, route):
    """How many requests Lectern answered on `route` (any method and status)."""
    text = requests.get(server.url + "/metrics").text
    pattern = r'lectern_http_request_duration_seconds_count\{[^}]*route="' + re.escape(route) + r'"[^}]*\} (\d+)'
    return sum(int(n) for n in re.findall(pattern, text))


def test_nginx_asks_lectern_once_per_token_and_refuses_what_lectern_refuses(behind_nginx):
    server, proxy, owner, course, lecture = behind_nginx
    if WORLD != "embedded":
        pytest.skip("nginx sends files itself only from a local file store")
    time.sleep(1.1)  # a token of its own: tokens issued within a second are the same
    grant = owner.playback(lecture["id"])
    base = proxy.url + grant["url"].rsplit("/", 1)[0]
    before = route_count(server, "/play/{token}/"), route_count(server, "/play/{token}/{*path}")
    master = requests.get(base + "/master.m3u8")
    rung = first_uri(master.text)
    playlist = requests.get(f"{base}/{rung}")
    folder = rung.rsplit("/", 1)[0]
    for seg in [l for l in playlist.text.splitlines() if l and not l.startswith("#")]:
        assert requests.get(f"{base}/{folder}/{seg}").status_code == 200
    assert requests.head(base + "/poster.jpg").status_code == 200
    after = route_count(server, "/play/{token}/"), route_count(server, "/play/{token}/{*path}")
    # One grant for the whole lecture, and no file through Lectern but the master (made
    # by Lectern: it lists the lecture's captions).
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1), (before, after)
    # Names Lectern would not serve are Lectern's to refuse, even when the file exists.
    token = grant["url"].split("/")[2]
    for path in ["index.m3u8", f"{folder}/master.m3u8", f"{folder}/../master.m3u8x", "source", f"{folder}/x.mp4"]:
        r = requests.get(f"{proxy.url}/play/{token}/{path}")
        assert r.status_code in (400, 404) and b"#EXTM3U" not in r.content, (path, r.status_code)
    # Methods other than GET and HEAD, and the CORS preflight, are Lectern's answers.
    assert requests.post(base + "/master.m3u8").status_code == 405
    pre = requests.options(base + "/master.m3u8", headers={"Origin": "https://lms.example", "Access-Control-Request-Method": "GET",
                                                           "Access-Control-Request-Headers": "range"})
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "*", pre.headers
    # An expired or forged token is refused with Lectern's JSON, though the file exists.
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    r = requests.get(f"{proxy.url}/play/{forged}/master.m3u8")
    assert r.status_code == 403 and r.json()["error"]["code"] == "bad_playback_token"
