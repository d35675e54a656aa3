"""Monitoring as shipped in deploy/monitoring, against a running Lectern and Debian's
Prometheus (scripts/setup.sh installs it): promtool accepts the alert rules, every
query of every Grafana dashboard returns series once Lectern has seen some traffic,
and an alert fires when its condition is forced (uploads refused until the failed
lectures alert fires). Prometheus scrapes every second here; the rules it loads are the
shipped ones with every `for:` shortened to 1 s (the one rewrite), so the test waits
seconds, not minutes."""
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from conftest import ROOT, WORLD, Api, Server, free_port

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
# Grafana's variables in queries, as concrete PromQL. Prometheus scrapes every second
# here, so a minute holds many samples.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
REFUSED_UPLOADS = 5  # LecternLecturesFailing: five refused uploads within an hour


def need(tool):
    path = shutil.which(tool)
    assert path, f"{tool} is missing: scripts/setup.sh test installs Debian's prometheus"
    return path


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def dashboard_queries():
    """(dashboard, panel, expr) of every target of every panel."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        for panel in d["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                out.append((path.name, panel["title"], expr))
    return out


def test_dashboards_are_grafana_models():
    assert len(DASHBOARDS) >= 3
    uids = set()
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, path
        assert d["uid"] not in uids and d["title"], path
        uids.add(d["uid"])
        assert [v["name"] for v in d["templating"]["list"]] == ["datasource"], path
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{path}: panel ids repeat"
        for panel in d["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["description"] and panel["targets"], f"{path}: {panel['title']}"
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip()
                assert "lectern_" in t["expr"], t["expr"]


class Prometheus:
    """Debian's prometheus on a free loopback port, scraping one Lectern every second."""

    def __init__(self, workdir: Path, target: str, rules: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        # JSON is YAML: no YAML library needed.
        self.config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "lectern", "static_configs": [{"targets": [target]}]}],
        }))
        self.data = workdir / "tsdb"
        self.log_path = workdir / "prometheus.log"
        self.proc = None

    def start(self):
        subprocess.run([need("promtool"), "check", "config", str(self.config)], check=True, capture_output=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([
            need("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={self.data}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def query(self, expr):
        r = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def wait_series(self, expr, timeout=15):
        deadline = time.time() + timeout
        while True:
            result = self.query(expr)
            if result or time.time() > deadline:
                return result
            time.sleep(0.5)

    def alerts(self):
        return requests.get(self.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]


@pytest.fixture
def prometheus_and_lectern(tmp_path, lectern_bin):
    need("prometheus")
    promtool = need("promtool")
    # promtool on the rules as shipped; then the same rules with every `for:` at 1 s.
    check = subprocess.run([promtool, "check", "rules", str(MONITORING / "alerts.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    shipped = (MONITORING / "alerts.yaml").read_text()
    fast, n = re.subn(r"^(\s+for:)\s*\S+\s*$", r"\1 1s", shipped, flags=re.M)
    assert n == shipped.count("- alert:"), "every alert has a `for:`"
    rules = tmp_path / "alerts-fast.yaml"
    rules.write_text(fast)
    subprocess.run([promtool, "check", "rules", str(rules)], check=True, capture_output=True)
    server = Server(tmp_path / "data").start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{server.port}", rules)
    try:
        prom.start()
        yield server, prom
    finally:
        prom.stop()
        server.stop()


def test_every_dashboard_query_returns_series_and_the_failed_lectures_alert_fires(prometheus_and_lectern, samples, synth):
    server, prom = prometheus_and_lectern
    started = time.time()
    # The rules as Prometheus loaded them: each alert has a severity, words and a
    # runbook that is a section of docs/operations.md.
    rules = [r for g in requests.get(prom.url + "/api/v1/rules", timeout=10).json()["data"]["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"LecternQueueAgeHigh", "LecternDeadLettersGrowing", "LecternLecturesFailing",
                                          "LecternHigh5xxRate", "LecternWorkersSaturated", "LecternDiskLow"}
    anchors = {github_anchor(line.lstrip("#")) for line in (ROOT / "docs" / "operations.md").read_text().splitlines()
               if line.startswith("#")}
    for rule in rules:
        assert rule["type"] == "alerting" and rule["health"] != "err", rule
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert page == "docs/operations.md" and anchor in anchors, rule["annotations"]["runbook_url"]
    # Counters are scraped at zero before anything happens, so increases count from it.
    assert prom.wait_series('lectern_lectures_failed_total{stage="upload"} == 0'), prom.log_path.read_text()[-2000:]

    owner = Api.signup(server.url, "owner")
    course = owner.course(title="Monitored course")
    video = owner.lecture(course["id"], "A real video")
    owner.upload(video["id"], samples / "good/rocket_launch_vp8_vorbis_640x360.webm")
    refused = []
    for i in range(REFUSED_UPLOADS):
        lec = owner.lecture(course["id"], f"Not a video {i}")
        owner.upload(lec["id"], synth.not_video())
        refused.append(lec)
    done, _ = owner.wait_lecture(video["id"])
    assert done["status"] == "ready", done
    for lec in refused:
        assert owner.wait_lecture(lec["id"])[0]["status"] == "failed"

    # A playback, a playback refused, and some other client errors.
    grant = owner.playback(video["id"])
    master_url = server.url + grant["url"]
    master = requests.get(master_url, timeout=10)
    assert master.status_code == 200
    variant_url = urljoin(master_url, next(line for line in master.text.splitlines() if line and not line.startswith("#")))
    playlist = requests.get(variant_url, timeout=10)
    assert playlist.status_code == 200
    segment = next(line for line in playlist.text.splitlines() if line and not line.startswith("#"))
    assert requests.get(urljoin(variant_url, segment), timeout=10).status_code == 200
    assert requests.get(server.url + "/play/not-a-token/master.m3u8", timeout=10).status_code in (401, 403, 404)
    assert owner.get("/api/lectures/00000000-0000-4000-8000-000000000000").status_code == 404
    assert requests.get(server.url + "/api/me", timeout=10).status_code == 401

    # What the new metrics say after this traffic, as scraped.
    assert prom.wait_series('lectern_lectures_failed_total{stage="upload"} == %d' % REFUSED_UPLOADS)
    assert prom.wait_series('lectern_job_duration_seconds_count > 0 and lectern_transcode_speed_ratio_count > 0')
    assert prom.wait_series('lectern_queue_wait_seconds_count{topic="lectern.jobs"} > 0')
    assert prom.wait_series("lectern_workers == 1 and lectern_data_dir_free_bytes > 0")
    assert prom.query('lectern_job_failures_total{outcome="dead_lettered"} > 0') == []
    # Only the embedded queue tells the age of its oldest message; RabbitMQ's is absent.
    assert bool(prom.query("lectern_queue_oldest_waiting_seconds")) == (WORLD != "distributed")

    # Every query of every dashboard has series (a value, NaN included, per series).
    queries = dashboard_queries()
    assert len(queries) >= 25
    empty = [(board, title, expr) for board, title, expr in queries if not prom.wait_series(expr)]
    assert not empty, "queries without series:\n" + "\n".join(map(str, empty))

    # The forced condition: refused uploads past the threshold fire LecternLecturesFailing.
    deadline = time.time() + 20
    firing = []
    while time.time() < deadline:
        firing = [a for a in prom.alerts() if a["labels"]["alertname"] == "LecternLecturesFailing" and a["state"] == "firing"]
        if firing:
            break
        time.sleep(0.5)
    assert firing, prom.alerts()
    assert firing[0]["labels"]["stage"] == "upload" and firing[0]["labels"]["severity"] == "warning"
    assert float(firing[0]["value"]) >= REFUSED_UPLOADS
    assert firing[0]["annotations"]["runbook_url"] == "docs/operations.md#lecternlecturesfailing"
    # Nothing else is wrong with this healthy Lectern (the disk alerts depend on the
    # machine, so they are left out).
    others = {a["labels"]["alertname"] for a in prom.alerts() if a["state"] == "firing"} - {"LecternLecturesFailing", "LecternDiskLow", "LecternDiskFull"}
    assert not others, others
    print(f"monitoring test ({WORLD}): {time.time() - started:.1f} s after Prometheus started")
