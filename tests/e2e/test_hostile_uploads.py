"""Hostile uploads: files that ask a media framework to fetch something else (HLS and
DASH playlists, Smooth Streaming and ASX manifests, URL lists, SDP sessions, QuickTime
reference movies and external data references), a timestamp-gap bomb, a header that
claims a huge picture, and plain garbage. Each goes through the real API as an owner
while a listener on loopback, whose address is written into the files, records every
connection. None may reach it; each ends failed with a plain reason from the fixed
vocabulary that names no address, path or internal; the server stays up and still
turns a good upload into a ready lecture afterwards. Runs in both worlds: in the
distributed one the file takes the S3 round trip first, and must be fenced all the same."""
import random
import re
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from conftest import Api, ffprobe_json, gst

# The only reasons a refused upload may give (matched as substrings, ignoring case).
VOCABULARY = [
    "not a video or audio file",
    "this file type is not accepted",
    "this codec is not accepted",
    "the file is cut short",
    "the file is damaged",
    "the video is larger than",
    "the frame rate is above",
    "the recording is longer than",
    "has no picture size",
    "too long a gap",
    "could not be processed in time",
    "made the decoder fail",
]
# What a reason must never show: where things are and what does the work.
LEAKS = ["127.0.0.1", "http", "file:", "/tmp", "/var", "/etc", "GStreamer", "souphttpsrc", "internal data stream"]
# Each lecture's own bound, and the bound on all the hostile ones together.
WAIT_SECS = 120
ALL_HOSTILE_SECS = 150
HUGE = 30000


# --- the listener ------------------------------------------------------------------

class Listener:
    """A TCP listener on loopback that records each connection (and its first bytes),
    answers 404 so a client gives up at once, and a UDP socket on the next port, where
    an SDP session's RTCP reports would be sent."""

    def __init__(self):
        self.tcp, self.udp = self._bind()
        self.port = self.tcp.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.hits = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._accept, self._receive)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _bind():
        for _ in range(50):
            tcp = socket.socket()
            tcp.bind(("127.0.0.1", 0))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", tcp.getsockname()[1] + 1))
            except OSError:
                tcp.close()
                udp.close()
                continue
            tcp.listen(16)
            tcp.settimeout(0.2)
            udp.settimeout(0.2)
            return tcp, udp
        raise RuntimeError("no free pair of ports")

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.tcp.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    first = conn.recv(512)
                    conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    first = b""
            self.hits.append(("tcp", peer, first.split(b"\r\n", 1)[0]))

    def _receive(self):
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(2048)
            except socket.timeout:
                continue
            self.hits.append(("udp", peer, data[:32]))

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.tcp.close()
        self.udp.close()


@pytest.fixture(scope="module")
def listener():
    # Started before any hostile file exists: its address goes into them.
    lis = Listener()
    yield lis
    lis.close()


# --- real media --------------------------------------------------------------------

def small_video(path, secs=4):
    """A real short H.264/AAC MP4: the good upload, and the local file a playlist names."""
    if not path.exists():
        gst(
            f"videotestsrc num-buffers={secs * 25} pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1,format=I420",
            "! x264enc speed-preset=ultrafast ! h264parse ! queue ! mp4mux name=m",
            f"audiotestsrc num-buffers={secs * 47} samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2",
            f"! avenc_aac ! aacparse ! queue ! m. m. ! filesink location={path}",
        )
    return path


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def atom(kind: bytes, *body: bytes) -> bytes:
    """One QuickTime/ISO BMFF box: 32-bit size, four-character type, body."""
    payload = b"".join(body)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def boxes(data: bytes):
    i = 0
    while i + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, i)
        yield kind, data[i + 8:i + size]
        i += size


# --- the hostile files, each made in its own folder --------------------------------

HOSTILE = {}


def hostile(fn):
    HOSTILE[fn.__name__] = fn
    return fn


@hostile
def hls_media_playlist(d, at):
    return write(d / "lecture.mp4", f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
                                    f"#EXTINF:10.0,\nhttp://{at}/seg0.ts\n#EXT-X-ENDLIST\n")


@hostile
def hls_master_playlist(d, at):
    return write(d / "lecture.mp4", f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.42c01e\"\n"
                                    f"http://{at}/a.m3u8\n")


@hostile
def hls_playlist_of_a_local_file(d, at):
    # The segment is a real video on this machine: following it would serve its bytes.
    local = small_video(d / "local.mp4")
    return write(d / "lecture.mp4", f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:0\n"
                                    f"#EXTINF:4.0,\n{local.resolve().as_uri()}\n#EXT-X-ENDLIST\n")


@hostile
def dash_manifest(d, at):
    return write(d / "lecture.mp4", f"""<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S" minBufferTime="PT2S"
     profiles="urn:mpeg:dash:profile:isoff-main:2011">
  <BaseURL>http://{at}/</BaseURL>
  <Period>
    <AdaptationSet mimeType="video/mp4" codecs="avc1.42c01e" width="640" height="360">
      <Representation id="v" bandwidth="500000">
        <SegmentList duration="10"><Initialization sourceURL="init.mp4"/><SegmentURL media="seg0.m4s"/></SegmentList>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
""")


@hostile
def smooth_streaming_manifest(d, at):
    return write(d / "lecture.mp4", f"""<?xml version="1.0" encoding="UTF-8"?>
<SmoothStreamingMedia MajorVersion="2" MinorVersion="0" Duration="100000000" TimeScale="10000000">
  <StreamIndex Type="video" Chunks="1" QualityLevels="1" MaxWidth="640" MaxHeight="360"
               Url="http://{at}/QualityLevels({{bitrate}})/Fragments(video={{start time}})">
    <QualityLevel Index="0" Bitrate="500000" FourCC="H264" MaxWidth="640" MaxHeight="360"
                  CodecPrivateData="00000001674D401FE8802802DD80B501010140000003004000000C83C60C448000000001684EBEF2"/>
    <c d="100000000"/>
  </StreamIndex>
</SmoothStreamingMedia>
""")


@hostile
def asx_playlist(d, at):
    return write(d / "lecture.wmv", f'<asx version="3.0"><title>Lecture</title><entry><ref href="http://{at}/x.wmv"/></entry></asx>\n')


@hostile
def wpl_playlist(d, at):
    return write(d / "lecture.wmv", f'<?wpl version="1.0"?><smil><head><title>Lecture</title></head><body><seq>'
                                    f'<media src="http://{at}/x.wmv"/></seq></body></smil>\n')


@hostile
def uri_list(d, at):
    return write(d / "lecture.mp4", f"http://{at}/x.mp4\n")


@hostile
def sdp_session(d, at):
    # RTP would be awaited on the listener's port number and RTCP sent to the next one.
    port = int(at.rsplit(":", 1)[1])
    return write(d / "lecture.mp4", f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Lecture\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                                    f"m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")


@hostile
def quicktime_reference_movie(d, at):
    # A movie that is only a pointer: moov > rmra > rmda > rdrf('url ', the URL).
    url = f"http://{at}/ref.mov".encode() + b"\0"
    rdrf = atom(b"rdrf", struct.pack(">I4sI", 0, b"url ", len(url)), url)
    ftyp = atom(b"ftyp", b"qt  ", struct.pack(">I", 0x200), b"qt  ")
    path = d / "lecture.mov"
    path.write_bytes(ftyp + atom(b"moov", atom(b"rmra", atom(b"rmda", rdrf))))
    return path


@hostile
def quicktime_external_data_reference(d, at):
    """A real movie's boxes with its media data left out and every track's data
    reference made external (flags 0) to file:///etc/passwd: the samples exist only
    there, so a server that does not follow references has nothing to show."""
    source = d / "source.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", source)
    top = dict(boxes(source.read_bytes()))
    path = d / "lecture.mov"
    path.write_bytes(atom(b"ftyp", top[b"ftyp"]) + atom(b"moov", external_data(top[b"moov"], b"file:///etc/passwd\0")))
    return path


def external_data(body: bytes, url: bytes) -> bytes:
    out = b""
    for kind, inner in boxes(body):
        if kind in (b"trak", b"mdia", b"minf", b"dinf"):
            inner = external_data(inner, url)
        elif kind == b"dref":
            # version/flags, one entry: a 'url ' that is not self-contained.
            inner = struct.pack(">II", 0, 1) + atom(b"url ", b"\0\0\0\0", url)
        out += atom(kind, inner)
    return out


@hostile
def huge_dimensions(d, at):
    """VP9 in WebM whose container and every key frame claim 30000x30000: the
    Matroska PixelWidth/PixelHeight and the VP9 frame size are patched in place."""
    path = d / "lecture.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x256:rate=25", "-frames:v", "12", "-pix_fmt", "yuv420p", "-c:v", "libvpx-vp9",
           "-g", "1",
           "-deadline", "realtime", "-cpu-used", "8", "-auto-alt-ref", "0", "-lag-in-frames", "0", path)
    data = bytearray(path.read_bytes())
    # 320 and 256 both take two bytes as EBML integers, as does 30000: no size changes.
    for element, old in ((b"\xb0\x82", 320), (b"\xba\x82", 256)):
        needle = element + old.to_bytes(2, "big")
        assert data.count(needle) == 1, needle
        i = data.index(needle)
        data[i + 2:i + 4] = HUGE.to_bytes(2, "big")
    keyframes = 0
    # Profile 0 shown key frame: 0x82, then the sync code 49 83 42.
    for m in re.finditer(re.escape(b"\x82\x49\x83\x42"), bytes(data)):
        vp9_frame_size(data, m.start(), HUGE, HUGE)
        keyframes += 1
    assert keyframes >= 10, keyframes
    path.write_bytes(bytes(data))
    # libavcodec refuses so large a picture, saying which size the stream claims.
    probe = subprocess.run(["ffprobe", "-v", "warning", str(path)], capture_output=True, text=True)
    assert f"{HUGE}x{HUGE}" in probe.stderr, probe.stderr
    return path


def vp9_frame_size(data, start, width, height):
    """After the marker byte and the 3-byte sync code come 4 colour bits, then
    frame_width_minus_1 and frame_height_minus_1, 16 bits each."""
    bits = int.from_bytes(data[start + 4:start + 9], "big")
    bits &= ~(((1 << 32) - 1) << 4)
    bits |= (width - 1) << 20 | (height - 1) << 4
    data[start + 4:start + 9] = bits.to_bytes(5, "big")


@hostile
def random_bytes(d, at):
    path = d / "lecture.mp4"
    # Seeded: the same bytes every run, checked once to match no format's signature.
    path.write_bytes(random.Random(20240607).randbytes(256 * 1024))
    return path


def timestamp_gap_bomb(d):
    """Three frames an hour apart, kept by Matroska: naive constant-rate output would
    be two hours of frames."""
    path = d / "lecture.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=320x240:r=1", "-frames:v", "3", "-vf", "setpts=N*3600/TB",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", path)
    packets = ffprobe_json(path, "-select_streams", "v", "-show_entries", "packet=pts_time")["packets"]
    assert [round(float(p["pts_time"])) for p in packets] == [0, 3600, 7200], packets
    return path


def write(path, text):
    path.write_text(text)
    return path


# --- uploading them all, then waiting ---------------------------------------------

@dataclass
class Outcome:
    lecture: dict | None  # None: it never finished, or the upload was refused
    secs: float  # from the end of its upload to its final status, to the second
    problem: str = ""


@pytest.fixture(scope="module")
def files(tmp_path_factory, listener):
    made = {name: make(tmp_path_factory.mktemp(name), listener.address) for name, make in HOSTILE.items()}
    made["timestamp_gap_bomb"] = timestamp_gap_bomb(tmp_path_factory.mktemp("gap"))
    return made


@pytest.fixture(scope="module")
def owner(shared_server):
    return Api.signup(shared_server.url, "owner")


@pytest.fixture(scope="module")
def pid(shared_server):
    # Taken before the first hostile upload: the same process must see it through.
    return shared_server.proc.pid


@pytest.fixture(scope="module")
def outcomes(shared_server, pid, owner, listener, files):
    course = owner.course(title="Hostile uploads")
    uploaded, results = {}, {}
    # All uploaded first, so they are handled side by side as an attacker would send them.
    for name, path in files.items():
        lecture = owner.lecture(course["id"], name)
        try:
            owner.upload(lecture["id"], path)
        except Exception as refused:  # noqa: BLE001 - tuspy raises several kinds
            results[name] = Outcome(None, 0.0, f"upload refused: {refused}")
            continue
        uploaded[name] = (lecture["id"], time.time())
    deadline = time.time() + ALL_HOSTILE_SECS
    for name, (lecture_id, done) in uploaded.items():
        try:
            lec, _ = owner.wait_lecture(lecture_id, timeout=max(1, min(WAIT_SECS, deadline - time.time())))
            # The server's own time of the final status (unix seconds), not when this
            # loop got round to asking.
            results[name] = Outcome(lec, lec.get("updated_at", time.time()) - int(done))
        except AssertionError as stuck:
            results[name] = Outcome(None, time.time() - done, str(stuck))
    return results


def check_reason(lec, server, listener):
    reason = lec["failure_reason"] or ""
    assert any(phrase in reason.lower() for phrase in VOCABULARY), f"not a vocabulary reason: {reason!r}"
    for leak in [listener.address, str(server.data_dir), *LEAKS]:
        assert leak.lower() not in reason.lower(), f"reason leaks {leak!r}: {reason!r}"
    assert not re.search(r"\bgst", reason, re.I), f"reason names GStreamer: {reason!r}"


# --- the tests, in the order that keeps the most telling ones first under -x -------

def test_nothing_reaches_the_listener(outcomes, listener):
    time.sleep(1)  # a connection still being made when the last lecture failed
    assert listener.hits == [], f"connections to {listener.address}: {listener.hits}"


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_upload_fails_with_a_plain_reason(case, outcomes, shared_server, listener):
    out = outcomes[case]
    assert out.lecture, f"{case}: {out.problem}"
    assert out.lecture["status"] == "failed", f"{case} ended {out.lecture['status']}: {out.lecture}"
    check_reason(out.lecture, shared_server, listener)


def test_a_playlist_naming_a_local_file_serves_none_of_it(outcomes, owner):
    out = outcomes["hls_playlist_of_a_local_file"]
    assert out.lecture and out.lecture["status"] == "failed", out
    assert owner.post(f"/api/lectures/{out.lecture['id']}/playback").status_code == 409


def test_a_timestamp_gap_bomb_finishes_in_bounded_time(outcomes, shared_server, listener, pid):
    out = outcomes["timestamp_gap_bomb"]
    assert out.lecture, f"timestamp gap bomb: {out.problem}"
    assert out.secs <= WAIT_SECS, out
    # Refused before any job: a gap of an hour is past LECTERN_MAX_GAP_SECS (600 s).
    assert out.lecture["status"] == "failed", out.lecture
    check_reason(out.lecture, shared_server, listener)
    assert "too long a gap" in out.lecture["failure_reason"], out.lecture
    assert shared_server.proc.poll() is None and shared_server.proc.pid == pid


def test_the_server_survives_and_still_transcodes_a_good_upload(outcomes, shared_server, owner, pid, listener, tmp_path_factory):
    assert shared_server.proc.poll() is None and shared_server.proc.pid == pid
    good = small_video(tmp_path_factory.mktemp("good") / "lecture.mp4")
    lecture = owner.lecture(owner.course(title="After the hostile ones")["id"], "good")
    owner.upload(lecture["id"], good)
    lec, _ = owner.wait_lecture(lecture["id"], timeout=WAIT_SECS)
    assert lec["status"] == "ready", lec
    assert abs(lec["duration_secs"] - 4.0) < 0.5, lec
    assert shared_server.proc.poll() is None and shared_server.proc.pid == pid
    assert "panicked" not in shared_server.log_path.read_text()
    # Nor did anything reach out later, on a retry.
    assert listener.hits == [], f"connections to {listener.address}: {listener.hits}"


def test_a_picture_past_the_size_limit_is_refused_as_too_large(outcomes):
    out = outcomes["huge_dimensions"]
    assert out.lecture and out.lecture["status"] == "failed", out
    assert "the video is larger than 8192x8192 pixels" in out.lecture["failure_reason"], out.lecture


@pytest.mark.parametrize("case", ["hls_playlist_of_a_local_file", "huge_dimensions", "timestamp_gap_bomb"])
def test_the_owner_gets_diagnostics_that_name_no_place(case, outcomes, owner, shared_server, listener):
    out = outcomes[case]
    r = owner.get(f"/api/lectures/{out.lecture['id']}/diagnostics")
    assert r.status_code == 200, r.text
    diag = r.json()
    assert diag["status"] == "failed" and diag["failure_reason"] == out.lecture["failure_reason"], diag
    text = (diag["diagnostics"] or "").strip()
    assert text, f"{case}: no diagnostics for the owner: {diag}"
    for leak in [listener.address, str(shared_server.data_dir), "127.0.0.1", "http:", "file:", "/tmp/", "/var/", "/work/"]:
        assert leak not in text, f"{case}: diagnostics leak {leak!r}: {text}"
    # Not for anyone else.
    stranger = Api.signup(shared_server.url, "student")
    assert stranger.get(f"/api/lectures/{out.lecture['id']}/diagnostics").status_code in (403, 404)
