"""Traces (issue 29): with OTEL_EXPORTER_OTLP_ENDPOINT set, Lectern exports its spans
over OTLP (HTTP, protobuf) to a real receiver on loopback, and one upload is one trace:
the tus PATCHes, the upload's finish and probe, the publish of each job, each (chunk)
job on a worker and the catalog's apply of each event the jobs report, parent linked to
child across the queue. In the distributed world the roles run as separate processes
(ingest, catalog, two workers) over RabbitMQ, so the trace crosses processes and the
AMQP headers; in the embedded world one `serve` process over its own queue.

With LECTERN_LOG_FORMAT=json every log line is a JSON object carrying its spans' fields:
the request id of the request it was written in, and the trace id."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import WORLD, Api, Server



def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest."""

    def __init__(self):
        self.spans, self.refused = [], []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    receiver.refused.append((self.path, self.headers.get("Content-Type")))
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    for rs in request.resource_spans:
                        resource = {a.key: value(a.value) for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                receiver.spans.append({
                                    "service": resource.get("service.name"),
                                    "name": s.name,
                                    "trace": s.trace_id.hex(),
                                    "id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "links": [(l.trace_id.hex(), l.span_id.hex()) for l in s.links],
                                    "attrs": {a.key: value(a.value) for a in s.attributes},
                                })
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return list(self.spans)

    def wait_for(self, check, timeout=30):
        """The spans once `check(spans)` is true (spans arrive in batches)."""
        deadline = time.time() + timeout
        while True:
            spans = self.snapshot()
            if check(spans):
                return spans
            if time.time() > deadline:
                raise AssertionError(f"spans never matched; got {[(s['service'], s['name'], s['attrs']) for s in spans][-60:]}")
            time.sleep(0.2)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = OtlpReceiver()
    yield r
    r.close()


def traced_env(receiver, **extra):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # Chunk jobs: a 24 s source split in 6 s chunks over two workers (the fixed
        # ladder, as tests/e2e/test_chunked.py).
        "LECTERN_CHUNK_SECS": "6",
        "LECTERN_LADDER": "fixed",
        "LECTERN_PLAN_WORKERS": "2",
        "LECTERN_LOG_FORMAT": "json",
    }
    env.update(extra)
    return env


def start_world(tmp_path, env):
    """(the server uploads go to, the server the API is on, every server)."""
    data = tmp_path / "data"
    if WORLD != "distributed":
        s = Server(data, env=env).start()
        return s, s, [s]
    catalog = Server(data, role="catalog", env=env).start()
    ingest = Server(data, role="ingest", env=env).start()
    workers = [Server(data, role="worker", env=env).start() for _ in range(2)]
    return ingest, catalog, [catalog, ingest, *workers]


def by_id(spans):
    return {s["id"]: s for s in spans}


def test_one_upload_is_one_trace_across_the_queue(tmp_path, lectern_bin, synth, receiver):
    source = synth.long_720p(24)
    ingest, api, servers = start_world(tmp_path, traced_env(receiver))
    try:
        owner = Api.signup(api.url, "owner")
        course = owner.course()
        lec = owner.lecture(course["id"])
        uploader = Api(ingest.url, owner.token)
        url = uploader.upload(lec["id"], source, chunk_size=256 << 10)
        upload_id = url.rstrip("/").rsplit("/", 1)[1]
        done, seen = owner.wait_lecture(lec["id"])
        assert done["status"] == "ready", (seen, done)

        def finish_of(spans):
            return [s for s in spans if s["name"] == "upload.finish" and s["attrs"].get("upload") == upload_id]

        def complete(spans):
            finish = finish_of(spans)
            if not finish:
                return False
            trace = finish[0]["trace"]
            jobs = [s for s in spans if s["trace"] == trace and s["name"] == "transcode.job"]
            applied = [s for s in spans if s["trace"] == trace and s["name"] == "catalog.apply"]
            published = {s["attrs"].get("job") for s in spans if s["trace"] == trace and s["name"] == "queue.publish"}
            # Every published job ran (the slides job comes after ready), and every job's
            # own report has been applied by the catalog.
            return (jobs and published <= {j["attrs"]["job"] for j in jobs}
                    and {a["parent"] for a in applied} >= {j["id"] for j in jobs})

        spans = receiver.wait_for(complete)
    finally:
        for s in servers:
            s.stop()
    assert not receiver.refused, receiver.refused

    finish = finish_of(spans)
    assert len(finish) == 1, finish
    finish = finish[0]
    trace = finish["trace"]
    ours = [s for s in spans if s["trace"] == trace]
    named = lambda name: [s for s in ours if s["name"] == name]
    ids = by_id(ours)

    # The tus requests: the POST that created the upload is the trace's root; every
    # PATCH's append is in the trace (linked to its own request span).
    roots = [s for s in ours if not s["parent"]]
    assert [r["name"] for r in roots] == ["request"], roots
    assert roots[0]["attrs"]["method"] == "POST" and roots[0]["attrs"]["path"] == "/api/uploads", roots
    appends = named("tus.append")
    assert len(appends) >= source.stat().st_size // (256 << 10) >= 2, appends
    assert all(a["parent"] == roots[0]["id"] for a in appends), appends
    patches = [s for s in spans if s["name"] == "request" and s["attrs"].get("method") == "PATCH"]
    assert patches and all(any(l[1] in {p["id"] for p in patches} for l in a["links"]) for a in appends), (appends, patches)

    # The finish continues the upload's trace (stored with the upload), and probes.
    assert finish["parent"] == roots[0]["id"]
    probes = named("upload.probe")
    assert len(probes) == 1 and probes[0]["parent"] == finish["id"], probes

    # Each job was published in the trace and its worker's span is the publish's child
    # (AMQP header) or the finish's (the message's field).
    publishes = named("queue.publish")
    jobs = named("transcode.job")
    assert len(jobs) > 1, f"no chunk jobs: {jobs}"
    # The same jobs (the outbox may publish one twice: outputs are keyed by asset).
    assert {p["attrs"]["job"] for p in publishes} == {j["attrs"]["job"] for j in jobs}, (publishes, jobs)
    assert any(j["attrs"]["part"] == "slides" for j in jobs), jobs
    assert all(p["parent"] == finish["id"] for p in publishes), publishes
    for job in jobs:
        parent = ids[job["parent"]]
        if WORLD == "distributed":
            assert parent["name"] == "queue.publish", (job, parent)
            assert parent["attrs"]["job"] == job["attrs"]["job"]
        else:
            assert parent["id"] == finish["id"] or parent["name"] == "queue.publish", (job, parent)
    assert any(j["attrs"]["part"].startswith("video-") for j in jobs), jobs

    # The catalog applies every event a job reported in the job's trace, the event that
    # made the lecture ready among them.
    applied = named("catalog.apply")
    job_ids = {j["id"] for j in jobs}
    from_jobs = [a for a in applied if a["parent"] in job_ids]
    assert {a["parent"] for a in from_jobs} == job_ids
    assert {a["attrs"]["kind"] for a in from_jobs} >= {"part_stored"}, from_jobs
    # The upload's own events (uploaded, progress 0) are the tus append's and finish's.
    assert any(a["attrs"]["kind"] == "uploaded" and ids[a["parent"]]["name"] == "tus.append" for a in applied), applied
    assert any(a["attrs"]["kind"] == "progress" and a["parent"] == finish["id"] for a in applied), applied

    if WORLD == "distributed":
        services = {s["service"] for s in ours}
        assert services == {"lectern-ingest", "lectern-worker", "lectern-catalog"}, services
        assert {j["service"] for j in jobs} == {"lectern-worker"}
        assert {a["service"] for a in applied} == {"lectern-catalog"}
    else:
        assert {s["service"] for s in ours} == {"lectern-serve"}

    # JSON log lines: the request's id and the trace id ride on every line written in a
    # request, and the worker's lines carry the upload's trace id.
    lines = []
    for s in servers:
        for raw in s.log_path.read_text().splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
    assert lines, "no JSON log lines"
    in_request = [l for l in lines if any(sp.get("name") == "request" for sp in l.get("spans", []))]
    for line in in_request:
        request = next(sp for sp in line["spans"] if sp["name"] == "request")
        assert len(request["request_id"]) == 36 and len(request["trace_id"]) == 32, line
    started = [l for l in lines if l.get("fields", {}).get("message") == "transcode job started"]
    assert started and all(l["span"]["name"] == "transcode.job" and l["span"]["trace_id"] == trace for l in started), started


def test_a_callers_traceparent_is_the_request_spans_parent(tmp_path, lectern_bin, receiver):
    s = Server(tmp_path / "data", env=traced_env(receiver)).start()
    try:
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        # A refused request: its answer is logged (at info) within the request's span.
        r = requests.get(s.url + "/api/lectures/no-such-lecture", headers={"traceparent": f"00-{caller_trace}-{caller_span}-01", "X-Request-Id": "trace-me-1"})
        assert 400 <= r.status_code < 500, r.text
        spans = receiver.wait_for(lambda spans: any(x["trace"] == caller_trace for x in spans))
    finally:
        s.stop()
    request = next(x for x in spans if x["trace"] == caller_trace)
    assert request["name"] == "request" and request["parent"] == caller_span
    assert request["attrs"]["request_id"] == "trace-me-1"
    line = next(json.loads(l) for l in s.log_path.read_text().splitlines() if "trace-me-1" in l)
    assert line["span"]["trace_id"] == caller_trace


def test_without_an_endpoint_nothing_is_traced_and_logs_stay_text(tmp_path, lectern_bin):
    s = Server(tmp_path / "data").start()
    try:
        r = requests.get(s.url + "/api/lectures/no-such-lecture", headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
        assert 400 <= r.status_code < 500
    finally:
        s.stop()
    text = s.log_path.read_text()
    assert "request refused" in text and not any(l.startswith("{") for l in text.splitlines()), text[:300]
    assert "trace_id" not in text and "4bf92f35" not in text
    assert "exporting traces" not in text
