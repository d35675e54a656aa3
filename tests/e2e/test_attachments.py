"""Attachments: slides and code a course's owner hands out. The bytes go by tus; their
kind is read from the bytes; enrolled students (and no one else) get short-lived links
that download the file and never show it; expired and forged links are refused."""
import base64
import io
import os
import time
import zipfile
from urllib.parse import unquote

import pytest
import requests

from conftest import WORLD, Api, Server


def pdf_bytes(pages=40):
    """A small real PDF, padded with a binary stream so it takes several tus chunks."""
    body = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    body += b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    body += b"3 0 obj << /Length 300000 >> stream\n" + os.urandom(300_000) + b"\nendstream endobj\n"
    return body + b"trailer << /Root 1 0 R >>\n%%EOF\n"


def zip_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fourier/transform.py", "import numpy as np\nprint(np.fft.fft([1, 0, 0, 0]))\n")
        z.writestr("README.md", "# Exercises\n")
    return buf.getvalue()


def meta(**fields):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def send(api, attachment, data, filename):
    """The whole file in one tus creation-with-upload request."""
    return api.post("/api/uploads", data=data, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
        "Upload-Metadata": meta(attachment_id=attachment["id"], filename=filename),
        "Content-Type": "application/offset+octet-stream",
    })


def send_resumably(api, attachment, path):
    """With tuspy, a real tus client, in 64 KiB chunks."""
    from tusclient import client
    tus = client.TusClient(api.base + "/api/uploads", headers=api.headers())
    tus.uploader(str(path), chunk_size=64 * 1024, metadata={"attachment_id": attachment["id"], "filename": path.name}).upload()


def announce(api, course, filename, size, **fields):
    return api.post(f"/api/courses/{course['id']}/attachments", json={"filename": filename, "size": size, **fields})


def listed(api, course):
    return {a["id"]: a for a in api.ok(api.get(f"/api/courses/{course['id']}/attachments"))["attachments"]}


def error_of(r):
    return r.json()["error"]["code"]


def deliveries():
    return ["proxy", "direct"] if WORLD == "distributed" else ["proxy"]


@pytest.mark.parametrize("delivery", deliveries())
def test_enrolled_students_download_through_links_that_expire(tmp_path, lectern_bin, delivery):
    server = Server(tmp_path / "data", env={"LECTERN_ATTACHMENT_LINK_SECS": "3", "PLAYBACK_DELIVERY": delivery}).start()
    try:
        owner = Api.signup(server.url, "owner")
        course = owner.course(title="Signals")
        lecture = owner.lecture(course["id"], "Fourier")
        slides = tmp_path / "Week 1 – slides.pdf"
        slides.write_bytes(pdf_bytes())
        code = zip_bytes()

        a = owner.ok(announce(owner, course, slides.name, slides.stat().st_size, title="Week 1 slides"), 201)
        assert a["state"] == "uploading" and a["lecture_id"] is None
        send_resumably(owner, a, slides)
        b = owner.ok(announce(owner, course, "exercises.zip", len(code), lecture_id=lecture["id"]), 201)
        sent = send(owner, b, code, "exercises.zip")
        assert sent.status_code == 201, sent.text
        code_key = "uploads/" + sent.headers["Location"].rsplit("/", 1)[1]
        assert server.stored(code_key) == code

        mine = listed(owner, course)
        assert mine[a["id"]]["state"] == mine[b["id"]]["state"] == "ready", mine
        assert mine[a["id"]]["content_type"] == "application/pdf" and mine[a["id"]]["title"] == "Week 1 slides"
        assert mine[b["id"]]["content_type"] == "application/zip" and mine[b["id"]]["lecture_id"] == lecture["id"]
        assert mine[b["id"]]["title"] == "exercises.zip"

        student = Api.signup(server.url, "student")
        outsider = Api.signup(server.url, "student")
        assert error_of(student.get(f"/api/courses/{course['id']}/attachments")) == "forbidden"
        student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)
        assert set(listed(student, course)) == {a["id"], b["id"]}

        # An outsider is refused both the list and a link.
        r = outsider.post(f"/api/attachments/{a['id']}/link")
        assert r.status_code == 403 and error_of(r) == "forbidden", r.text
        assert outsider.get(f"/api/courses/{course['id']}/attachments").status_code == 403
        assert requests.post(f"{server.url}/api/attachments/{a['id']}/link", timeout=10).status_code == 401

        link = student.ok(student.post(f"/api/attachments/{a['id']}/link"))
        url = link["url"] if link["url"].startswith("http") else server.url + link["url"]
        assert link["expires_at"] - time.time() <= 3.5
        if delivery == "direct":
            assert not url.startswith(server.url), "direct delivery hands out presigned storage URLs"
        got = requests.get(url, timeout=30)
        assert got.status_code == 200, got.text
        assert got.content == slides.read_bytes()
        disposition = got.headers["Content-Disposition"]
        assert disposition.startswith("attachment;"), disposition
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == slides.name
        assert got.headers["Content-Type"] == "application/pdf"
        if delivery == "proxy":
            assert got.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in got.headers["Content-Security-Policy"]
            part = requests.get(url, headers={"Range": "bytes=0-7"}, timeout=30)
            assert part.status_code == 206 and part.content == b"%PDF-1.4"

        # Links are short-lived: the same one is refused once it has expired.
        time.sleep(max(0, link["expires_at"] - time.time()) + 1.5)
        late = requests.get(url, timeout=30)
        assert late.status_code == 403, late.text
        if delivery == "proxy":
            assert error_of(late) == "bad_download_link"
            forged = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
            assert requests.get(forged, timeout=30).status_code == 403

        # A deleted attachment is gone for everyone, file and all.
        assert owner.delete(f"/api/attachments/{b['id']}").status_code == 204
        assert student.post(f"/api/attachments/{b['id']}/link").status_code == 404
        assert set(listed(student, course)) == {a["id"]}
        deadline = time.time() + 10
        while code_key in server.list_stored("uploads") and time.time() < deadline:
            time.sleep(0.2)
        assert code_key not in server.list_stored("uploads")
    finally:
        server.stop()


def test_sizes_and_kinds_are_checked_and_refusals_say_why(tmp_path, lectern_bin):
    server = Server(tmp_path / "data", env={"LECTERN_MAX_ATTACHMENT_BYTES": str(1 << 20)}).start()
    try:
        owner = Api.signup(server.url, "owner")
        other_owner = Api.signup(server.url, "owner")
        course = owner.course(title="Systems")
        student = Api.signup(server.url, "student")
        student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 201)

        r = announce(owner, course, "dataset.zip", (1 << 20) + 1)
        assert r.status_code == 413 and error_of(r) == "payload_too_large" and "at most 1048576 bytes" in r.json()["error"]["message"]
        for bad in ["../../etc/passwd", "", "a\nb.pdf"]:
            r = announce(owner, course, bad, 10)
            assert r.status_code == 400 and error_of(r) == "invalid", (bad, r.text)
        assert announce(student, course, "x.pdf", 10).status_code == 403
        r = announce(owner, course, "x.pdf", 10, lecture_id="00000000-0000-4000-8000-000000000000")
        assert r.status_code == 404

        # The bytes decide: a program named like slides is refused, with the reason.
        elf = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + os.urandom(4000)
        fake = owner.ok(announce(owner, course, "slides.pdf", len(elf)), 201)
        assert send(other_owner, fake, elf, "slides.pdf").status_code == 403
        r = send(owner, fake, elf[:-1], "slides.pdf")
        assert r.status_code == 400 and "size" in r.json()["error"]["message"]
        r = send(owner, fake, elf, "slides.pdf")
        assert r.status_code == 415 and error_of(r) == "unsupported_file_type", r.text
        assert "slides.pdf is application/x-executable" in r.json()["error"]["message"]
        refused = listed(owner, course)[fake["id"]]
        assert refused["state"] == "refused" and "attachments may be" in refused["reason"]
        assert fake["id"] not in listed(student, course)
        assert student.post(f"/api/attachments/{fake['id']}/link").status_code in (404, 409)
        assert send(owner, fake, elf, "slides.pdf").status_code == 409

        # Text of any kind is handed out as plain text, under a name that will not run.
        page = b"<!doctype html><script>alert(document.domain)</script>"
        html = owner.ok(announce(owner, course, "notes.html", len(page)), 201)
        owner.ok(send(owner, html, page, "notes.html"), 201)
        ready = listed(student, course)[html["id"]]
        assert ready["content_type"] == "text/plain; charset=utf-8" and ready["filename"] == "notes.html.txt"
        link = student.ok(student.post(f"/api/attachments/{html['id']}/link"))
        got = requests.get(server.url + link["url"], timeout=30)
        assert got.content == page and got.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert got.headers["Content-Disposition"].startswith('attachment; filename="notes.html.txt"')
    finally:
        server.stop()
