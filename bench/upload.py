"""Issue 6, uploads: a tus upload over loopback with tus-js-client (Node) into Lectern
against the same upload into @tus/server with @tus/file-store.

Reports MiB/s (file size / time from tus-js-client's start() to onSuccess, i.e. until the
server acknowledged the last byte) and each server's peak RSS (VmHWM from
/proc/PID/status, reset before every upload through /proc/PID/clear_refs) and RSS growth
(that peak minus VmRSS just before the upload).

Targets (issue 6): Lectern >= 1.5x @tus/server's throughput; Lectern's RSS growth under
64 MB whatever the size.

    python3 bench/upload.py --quick                 # 64 MiB, once each: checks the machinery
    python3 bench/upload.py [--bin PATH] [--work DIR]   # 1 GiB, 3 runs each, medians

The two servers never run at the same time: Lectern's runs come first, then @tus/server's.
Node helpers live in bench/upload/ (package.json, tus-server.mjs, client.mjs); their
node_modules is installed on first use (`npm ci`).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (Api, Lectern, free_port, machine_notes, main, ratio,  # noqa: E402
                    stop_process, target)

NODE_DIR = HERE / "upload"
NODE_DEPS = ("tus-js-client", "@tus/server", "@tus/file-store")
MIB = 1 << 20
RSS_LIMIT_MB = 64  # issue 6: decimal megabytes
RATIO_LIMIT = 1.5


# ---------------------------------------------------------------- helpers

def ensure_node_modules():
    """Installs bench/upload's npm dependencies unless they are there (idempotent)."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise RuntimeError("node and npm are needed (Node >= 20.19 for @tus/server 2)")
    if all((NODE_DIR / "node_modules" / d / "package.json").exists() for d in NODE_DEPS):
        return False
    cmd = ["npm", "ci" if (NODE_DIR / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    p = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {NODE_DIR}: {p.stdout[-1500:]} {p.stderr[-1500:]}")
    return True


def package_version(name):
    try:
        return json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def make_test_file(path, size):
    """`size` bytes of incompressible data: one 1 MiB random block repeated (no holes)."""
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, MIB)
            f.write(block[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


def mem_status(pid):
    """(VmRSS, VmHWM) of a live process, in KiB."""
    rss = hwm = None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def cpu_seconds(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0, /proc/PID/clear_refs `5`).
    Returns False when the kernel or permissions refuse; the peak is then since start."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    rss, hwm = mem_status(pid)
    return hwm is not None and rss is not None and hwm <= rss + 1024


def tus_client(endpoint, path, chunk_size, headers=None, metadata=None, timeout=900):
    """One upload with bench/upload/client.mjs; returns its {"bytes", "seconds", ...}."""
    cmd = ["node", str(NODE_DIR / "client.mjs"), "--endpoint", endpoint, "--file", str(path),
           "--chunk-size", str(chunk_size)]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}: {v}"]
    for k, v in (metadata or {}).items():
        cmd += ["--meta", f"{k}={v}"]
    p = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"tus-js-client upload to {endpoint} failed ({p.returncode}): "
                           f"{p.stdout[-1000:]} {p.stderr[-1500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def measured_upload(pid, do_upload):
    """Runs `do_upload()` (returns the client's JSON) and measures the server `pid` around
    it: RSS before, peak (VmHWM after a reset), CPU seconds used."""
    os.sync()  # start from clean page cache writeback, whatever the previous run left dirty
    time.sleep(0.5)
    reset_ok = reset_peak(pid)
    rss_before, _ = mem_status(pid)
    cpu_before = cpu_seconds(pid)
    load1 = os.getloadavg()[0]
    out = do_upload()
    _, hwm = mem_status(pid)  # read at once: Lectern probes the file right after the last byte
    cpu = cpu_seconds(pid) - cpu_before
    return {
        "mib_per_s": round(out["bytes"] / MIB / out["seconds"], 1),
        "seconds": round(out["seconds"], 2),
        "bytes": out["bytes"],
        "rss_before_mib": round(rss_before / 1024, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
        "rss_growth_mib": round((hwm - rss_before) / 1024, 1),
        "server_cpu_s": round(cpu, 2),
        "load1_before": round(load1, 2),
        "peak_reset": reset_ok,
    }


def wait_lecture_settled(api, lecture_id, timeout=180):
    """After the last byte Lectern probes the file in the background; a random file is
    not a video, so the lecture turns `failed`. Wait for that, so the next run starts
    quiet. Returns the final status."""
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = api.get(f"/api/lectures/{lecture_id}")["status"]
        if status in ("failed", "ready"):
            return status
        time.sleep(0.3)
    return f"{status} (still after {timeout}s)"


def summary_row(server, rows):
    return {
        "server": server, "run": "median" if len(rows) > 1 else "only",
        "mib_per_s": round(statistics.median(r["mib_per_s"] for r in rows), 1),
        "seconds": round(statistics.median(r["seconds"] for r in rows), 2),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
        "rss_growth_mib": max(r["rss_growth_mib"] for r in rows),
        "server_cpu_s": round(statistics.median(r["server_cpu_s"] for r in rows), 2),
    }


# ---------------------------------------------------------------- the two servers

def bench_lectern(lectern_bin, data_dir, test_file, warm_file, chunk, runs):
    rows, statuses = [], []
    with Lectern(lectern_bin, data_dir) as lec:
        owner = Api.signup(lec.url, "owner")
        course = owner.post("/api/courses", {"title": "Upload bench"})
        endpoint = lec.url + "/api/uploads"
        auth = {"Authorization": f"Bearer {owner.token}"}

        def upload(path):
            lecture = owner.post(f"/api/courses/{course['id']}/lectures", {"title": f"Upload {len(statuses)}"})
            meta = {"lecture_id": lecture["id"], "filename": Path(path).name}
            return lecture, (lambda: tus_client(endpoint, path, chunk, auth, meta))

        # Warm-up: a small upload, so the first probe's one-time costs (media framework
        # start-up) are in the "before" RSS and not charged to the measured upload.
        lecture, go = upload(warm_file)
        go()
        statuses.append(wait_lecture_settled(owner, lecture["id"]))
        for i in range(runs):
            lecture, go = upload(test_file)
            row = measured_upload(lec.pid, go)
            status = wait_lecture_settled(owner, lecture["id"])
            statuses.append(status)
            _, hwm = mem_status(lec.pid)
            rows.append({"server": "lectern", "run": i + 1, **row, "lecture_status": status,
                         "peak_rss_incl_probe_mib": round(hwm / 1024, 1)})
    return rows, statuses


def bench_tus_server(store_dir, test_file, warm_file, chunk, runs):
    rows = []
    port = free_port()
    proc = subprocess.Popen(["node", str(NODE_DIR / "tus-server.mjs"), "--dir", str(store_dir), "--port", str(port)],
                            cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # "listening", or the error it died with
        if "listening" not in line:
            proc.wait(5)
            raise RuntimeError(f"@tus/server did not start: {line}{proc.stdout.read()[-1500:]}")
        endpoint = f"http://127.0.0.1:{port}/files"

        def clear_store():
            for p in Path(store_dir).iterdir():
                p.unlink()

        tus_client(endpoint, warm_file, chunk, metadata={"filename": Path(warm_file).name})
        clear_store()
        for i in range(runs):
            row = measured_upload(proc.pid, lambda: tus_client(
                endpoint, test_file, chunk, metadata={"filename": Path(test_file).name}))
            stored = [p for p in Path(store_dir).iterdir() if not p.name.endswith(".json")]
            if len(stored) != 1 or stored[0].stat().st_size != row["bytes"]:
                raise RuntimeError(f"@tus/server stored {[(p.name, p.stat().st_size) for p in stored]}, "
                                   f"expected one file of {row['bytes']} bytes")
            clear_store()
            rows.append({"server": "@tus/server", "run": i + 1, **row})
    finally:
        stop_process(proc)
        if proc.stdout:
            proc.stdout.close()
    return rows


# ---------------------------------------------------------------- the module

def durable_write_speed(path, size):
    """MiB/s of writing `size` bytes and fdatasync, with dd: the disk's ceiling for a
    server that acknowledges bytes only once they are durable."""
    os.sync()
    started = time.time()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=4M", f"count={size // (4 * MIB)}", "conv=fdatasync"],
                   check=True, capture_output=True)
    seconds = time.time() - started
    path.unlink()
    return round(size / MIB / seconds, 1)


def run(quick, lectern_bin, work):
    size = 64 * MIB if quick else 1024 * MIB
    runs = 1 if quick else 3
    # Same chunk size for both servers; quick uses a smaller one so several PATCHes run.
    chunk = 16 * MIB if quick else 64 * MIB
    notes = machine_notes()
    installed = ensure_node_modules()
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()

    Path(work).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="upload-", dir=work))
    test_file, warm_file = tmp / "upload-test.bin", tmp / "warm-up.bin"
    try:
        make_test_file(test_file, size)
        make_test_file(warm_file, MIB)
        disk = durable_write_speed(tmp / "dd.bin", size)
        lec_rows, statuses = bench_lectern(lectern_bin, tmp / "lectern-data", test_file, warm_file, chunk, runs)
        tus_rows = bench_tus_server(tmp / "tus-store", test_file, warm_file, chunk, runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            Path(work).rmdir()  # only if empty
        except OSError:
            pass

    lec_sum, tus_sum = summary_row("lectern", lec_rows), summary_row("@tus/server", tus_rows)
    rows = lec_rows + tus_rows + [lec_sum, tus_sum, {"server": "disk (dd, fdatasync)", "run": "ceiling", "mib_per_s": disk}]
    speedup = ratio(lec_sum["mib_per_s"], tus_sum["mib_per_s"])
    growth = lec_sum["rss_growth_mib"]
    growth_limit_mib = RSS_LIMIT_MB * 1e6 / MIB
    build = "debug" if "/debug/" in str(lectern_bin) else "release" if "/release/" in str(lectern_bin) else "unknown"
    notes += [
        f"{size // MIB} MiB file (one random 1 MiB block repeated), {runs} run(s) per server, medians; "
        f"tus-js-client {package_version('tus-js-client')} chunkSize {chunk // MIB} MiB for both servers; "
        f"Node {node_version}; @tus/server {package_version('@tus/server')} + @tus/file-store "
        f"{package_version('@tus/file-store')}" + (" (npm dependencies installed by this run)" if installed else ""),
        f"lectern binary {lectern_bin} ({build} build)" + ("; debug numbers say little about release speed" if build == "debug" else ""),
        "throughput = bytes / time from tus-js-client start() to onSuccess (creation POST + PATCHes, "
        "last byte acknowledged); both over loopback, client and server on the same cores",
        "peak RSS = VmHWM, reset through /proc/PID/clear_refs before each upload and read the moment the "
        "client finishes; growth = that peak minus VmRSS just before the upload; summary rows give the "
        "worst peak and growth over the runs",
        "each server got a 1 MiB warm-up upload first (Lectern: its first probe starts the media framework)",
        "Lectern fsyncs the upload file at the end of every PATCH; @tus/file-store does not fsync "
        "(its bytes may still be in the page cache when onSuccess fires). os.sync() runs before every upload",
        f"disk ceiling: `dd bs=4M conv=fdatasync` of the same size into the same folder, {disk} MiB/s: no server "
        "that acknowledges only durable bytes can go faster than this",
        "the file is not a video: after the last byte Lectern probes it in the background and marks the "
        f"lecture failed (statuses seen: {', '.join(statuses)}); lectern rows' peak_rss_incl_probe_mib is "
        "VmHWM after that, probing included",
    ]
    if quick:
        notes.append("--quick: 64 MiB once each; checks the machinery, the numbers are not meaningful; "
                     "the RSS target is only checked at this size")
    if not all(r["peak_reset"] for r in lec_rows + tus_rows):
        notes.append("VmHWM could not be reset for some run(s): their peak is since the server started")
    return {
        "title": "Uploads: tus-js-client into Lectern vs @tus/server + @tus/file-store",
        "rows": rows,
        "notes": notes,
        "targets": [
            target("lectern / @tus/server throughput (median MiB/s)", speedup, f">= {RATIO_LIMIT}x",
                   speedup is not None and speedup >= RATIO_LIMIT),
            target("lectern RSS growth during upload, MiB (worst run)", growth,
                   f"< {RSS_LIMIT_MB} MB ({growth_limit_mib:.1f} MiB)", growth < growth_limit_mib),
        ],
    }


if __name__ == "__main__":
    main(run, "upload")
