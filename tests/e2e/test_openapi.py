"""The OpenAPI contract: /api/openapi.json describes every route the server has, /api/docs
browses it, and schemathesis, generating requests from it, finds no server error and no
response that disagrees with it."""
import os
import subprocess
from pathlib import Path

import requests

from conftest import Api, Server

HERE = Path(__file__).resolve().parent
TOOLS = Path(os.environ.get("LECTERN_TOOLS_DIR", "/var/tmp/lectern-tools"))
SCHEMATHESIS = TOOLS / "schemathesis" / "bin" / "schemathesis"

# Every route the API serves, as (method, path template).
ROUTES = {
    ("post", "/api/auth/signup"), ("post", "/api/auth/login"), ("get", "/api/me"), ("get", "/api/me/courses"),
    ("get", "/api/courses"), ("post", "/api/courses"), ("get", "/api/courses/{id}"), ("patch", "/api/courses/{id}"),
    ("delete", "/api/courses/{id}"), ("post", "/api/courses/{id}/lectures"), ("post", "/api/courses/{id}/enroll"),
    ("get", "/api/lectures/{id}"), ("patch", "/api/lectures/{id}"), ("delete", "/api/lectures/{id}"),
    ("post", "/api/lectures/{id}/playback"), ("get", "/api/lectures/{id}/progress"), ("put", "/api/lectures/{id}/progress"),
    ("get", "/api/events"), ("get", "/media/posters/{file}"), ("get", "/play/{token}/{path}"), ("get", "/play/{token}/"),
    ("options", "/api/uploads"), ("post", "/api/uploads"), ("head", "/api/uploads/{id}"), ("patch", "/api/uploads/{id}"),
    ("delete", "/api/uploads/{id}"), ("post", "/api/transcodes"), ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
}


def test_the_description_is_openapi_3_1_and_documents_every_route_and_error(server):
    spec = requests.get(server.url + "/api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops if m in ("get", "post", "put", "patch", "delete", "head", "options")}
    assert ROUTES <= documented, f"undocumented: {sorted(ROUTES - documented)}"
    assert "bearer" in spec["components"]["securitySchemes"]
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("responses"), f"{method} {path}: no responses"
            if path not in ("/healthz", "/readyz", "/metrics") and (method, path) != ("options", "/api/uploads"):
                default = op["responses"].get("default")
                assert default and "Error" in str(default), f"{method} {path}: errors undocumented"
    # Every documented route is really served (no 404 from the router).
    for method, path in documented:
        url = server.url + path.replace("{id}", "nope").replace("{file}", "nope.jpg").replace("{token}", "t").replace("{path}", "master.m3u8")
        r = requests.request(method.upper(), url, headers={"Tus-Resumable": "1.0.0"})
        assert not (r.status_code == 404 and "no such route" in r.text), f"{method} {path} is not served"


def test_the_docs_page_loads_the_description(server):
    r = requests.get(server.url + "/api/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert 'id="api-docs"' in r.text
    script = next(line for line in r.text.splitlines() if "<script" in line and "src=" in line)
    src = script.split('src="', 1)[1].split('"', 1)[0]
    js = requests.get(server.url + src)
    assert js.status_code == 200 and "/api/openapi.json" in js.text


def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(tmp_path, lectern_bin):
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} missing: run scripts/setup.sh"
    # Limits off: the fuzzer would otherwise spend its requests on 429s.
    server = Server(tmp_path / "data", env={"LECTERN_RATE_LIMITS": "off"}).start()
    try:
        owner = Api.signup(server.url, role="owner")
        course = owner.course(title="Seeded course", published=True)
        owner.lecture(course["id"])
        checks = ",".join([
            "not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
            "missing_required_header", "ignored_auth",
        ])
        cmd = [
            str(SCHEMATHESIS), "run", f"{server.url}/api/openapi.json",
            "-H", f"Authorization: Bearer {owner.token}",
            "--checks", checks, "--max-examples", os.environ.get("LECTERN_SCHEMATHESIS_EXAMPLES", "25"),
            # One worker: hypothesis, parsing lambdas in threads, trips a CPython 3.11 AST bug.
            "--workers", "1", "--request-timeout", "20", "--no-color",
        ]
        env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks", PYTHONPATH=str(HERE))
        run = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=900)
        report = run.stdout + run.stderr
        (tmp_path / "schemathesis.txt").write_text(report)
        assert run.returncode == 0, report[-6000:]
        assert "Server error" not in report
        log = server.log_path.read_text()
        assert "panicked" not in log, log[-3000:]
    finally:
        server.stop()
