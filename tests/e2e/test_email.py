"""Email: a real SMTP server on loopback (aiosmtpd) receives Lectern's mail and the test
reads it: the verify mail (text and HTML parts, user text escaped) and its single-use
link; password reset without account enumeration, its link good once; lecture ready and
failed mails to the owner; one new-lecture digest per course and period to enrolled
students, with List-Unsubscribe headers and a one-click unsubscribe that stops the next;
and mail caused while the mail server is down (and Lectern restarted) arrives once it is
back: the outbox."""
import email
import email.policy
import json
import re
import subprocess
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from aiosmtpd.controller import Controller

from conftest import ROOT, Api, Server, free_port

FROM = "Lectern <lectern@example.org>"
# Mail retried every second in these tests; a digest 25 s after its first lecture.
FAST = {"LECTERN_MAIL_RETRY_SECS": ",".join(["1"] * 30), "LECTERN_MAIL_DIGEST_SECS": "25"}


class MailServer:
    """An SMTP server on loopback that keeps every message it is given."""

    def __init__(self):
        self.port = free_port()
        self.messages = []
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, msg))
        return "250 Message accepted for delivery"

    def start(self):
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None

    def to(self, address, subject=None):
        return [m for rcpt, m in self.messages if address in rcpt and (subject is None or subject in m["Subject"])]

    def wait(self, address, subject=None, count=1, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.to(address, subject)
            if len(got) >= count:
                return got
            time.sleep(0.2)
        raise AssertionError(f"no mail {subject!r} to {address}: {[(r, m['Subject']) for r, m in self.messages]}")


def mail_server_env(box):
    return {"LECTERN_SMTP_URL": f"smtp://127.0.0.1:{box.port}?tls=none", "LECTERN_MAIL_FROM": FROM, **FAST}


def start_lectern(data, box, **env):
    server = Server(data, env={**mail_server_env(box), **env})
    server.env["LECTERN_PUBLIC_URL"] = server.url
    return server.start()


def digests(box, address):
    return [m for m in box.to(address) if m["List-Unsubscribe"]]


def parts(msg):
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    return text, html


def link(msg, marker):
    text, _ = parts(msg)
    found = re.findall(r"https?://\S+", text)
    return [u for u in found if marker in u][0]


def token_of(url):
    query = urlparse(url).fragment.split("?", 1)[1] if "#" in url else urlparse(url).query
    return parse_qs(query)["token"][0]


def verified_signup(server, box, role, name=None):
    api = Api.signup(server.url, role, name=name)
    mail = box.wait(api.email, "Confirm your email address")[-1]
    api.ok(requests.post(server.url + "/api/auth/verify", json={"token": token_of(link(mail, "#/verify"))}, timeout=30))
    return api


def test_verify_and_reset_by_mail(tmp_path, lectern_bin):
    box = MailServer().start()
    server = start_lectern(tmp_path / "data", box)
    try:
        ada = Api.signup(server.url, "student", name="<b>Ada</b> & co")
        assert ada.user["email_verified"] is False
        mail = box.wait(ada.email, "Confirm your email address")[0]
        assert mail["From"] == FROM and mail["To"] == ada.email
        text, html = parts(mail)
        assert "<b>Ada</b> & co" in text
        assert "&lt;b&gt;Ada&lt;/b&gt; &amp; co" in html and "<b>Ada</b>" not in html
        url = link(mail, "#/verify?token=")
        assert url.startswith(server.url + "/#/verify?token=") and url in html.replace("&amp;", "&")
        token = token_of(url)

        # A forged token is refused; the real one verifies once.
        forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        r = requests.post(server.url + "/api/auth/verify", json={"token": forged}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
        user = ada.ok(requests.post(server.url + "/api/auth/verify", json={"token": token}, timeout=30))
        assert user["email_verified"] is True and user["id"] == ada.user["id"]
        assert ada.ok(ada.get("/api/me"))["email_verified"] is True
        again = requests.post(server.url + "/api/auth/verify", json={"token": token}, timeout=30)
        assert again.status_code == 409, again.text
        assert ada.post("/api/auth/verify/resend").status_code == 409

        # Reset: the same answer for an unknown address and a known one.
        stranger = f"nobody-{time.time_ns()}@example.org"
        answers = []
        for address in [stranger, ada.email.upper()]:
            started = time.monotonic()
            r = requests.post(server.url + "/api/auth/password-reset", json={"email": address}, timeout=30)
            answers.append((r.status_code, r.text, time.monotonic() - started))
        assert answers[0][:2] == answers[1][:2] and answers[0][0] == 202, answers
        assert abs(answers[0][2] - answers[1][2]) < 0.25, answers
        reset = box.wait(ada.email, "Reset your password")[0]
        time.sleep(2)
        assert box.to(stranger) == [], "no mail for an address without an account"
        text, html = parts(reset)
        url = link(reset, "#/reset?token=")
        assert "30 minutes" in text and "Choose a new password" in html
        token = token_of(url)

        new_password = "a brand new secret"
        confirm = {"token": token, "password": new_password}
        short = requests.post(server.url + "/api/auth/password-reset/confirm", json={**confirm, "password": "short"}, timeout=30)
        assert short.status_code == 400, "a refused password does not use the token up"
        r = requests.post(server.url + "/api/auth/password-reset/confirm", json=confirm, timeout=30)
        assert r.status_code == 204, r.text
        r = requests.post(server.url + "/api/auth/password-reset/confirm", json={**confirm, "password": "yet another one"}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid", "a reset link works once"
        old = requests.post(server.url + "/api/auth/login", json={"email": ada.email, "password": ada.password}, timeout=30)
        assert old.status_code == 401
        new = requests.post(server.url + "/api/auth/login", json={"email": ada.email, "password": new_password}, timeout=30)
        assert new.status_code == 200 and new.json()["user"]["email_verified"] is True
    finally:
        server.stop()
        box.stop()


def test_mail_waits_out_a_mail_server_outage_and_a_restart(tmp_path, lectern_bin):
    box = MailServer().start()
    data = tmp_path / "data"
    server = start_lectern(data, box)
    try:
        box.stop()
        # Caused while the mail server is down: a verify mail and a reset mail.
        ada = Api.signup(server.url, "student")
        assert requests.post(server.url + "/api/auth/password-reset", json={"email": ada.email}, timeout=30).status_code == 202
        time.sleep(3)
        server.stop()
        server = start_lectern(data, box)
        time.sleep(2)
        box.start()
        box.wait(ada.email, "Confirm your email address")
        box.wait(ada.email, "Reset your password")
        time.sleep(2)
        assert len(box.to(ada.email)) == 2, "each mail once"
    finally:
        server.stop()
        box.stop()


def test_lecture_mails_and_a_daily_digest_with_one_click_unsubscribe(tmp_path, lectern_bin, samples, synth):
    box = MailServer().start()
    server = start_lectern(tmp_path / "data", box, LECTERN_WORKERS="2", LECTERN_LADDER="fixed")
    try:
        owner = verified_signup(server, box, "owner", name="Prof <Owner>")
        student = verified_signup(server, box, "student")
        lazy = Api.signup(server.url, "student")  # never verifies: gets no digest
        course = owner.course(title="Signals & <Systems>")
        for s in (student, lazy):
            s.ok(s.post(f"/api/courses/{course['id']}/enroll"), 201)

        # Two lectures ready within one digest period: one mail listing both.
        sample = samples / "good/rocket_launch_vp8_vorbis_640x360.webm"
        first, second = owner.lecture(course["id"], "Fourier"), owner.lecture(course["id"], "Laplace")
        owner.upload(first["id"], sample)
        owner.upload(second["id"], sample)
        for lec in (first, second):
            assert owner.wait_lecture(lec["id"])[0]["status"] == "ready"
        ready = box.wait(owner.email, "Ready:", count=2)
        assert {m["Subject"] for m in ready} == {"Ready: Fourier", "Ready: Laplace"}
        text, html = parts(ready[0])
        assert "Signals & <Systems>" in text and "Signals &amp; &lt;Systems&gt;" in html
        assert "<Systems>" not in html and "List-Unsubscribe" not in ready[0]

        digest = box.wait(student.email, "new lectures in", timeout=90)
        assert len(digest) == 1 and digest[0]["Subject"] == "2 new lectures in Signals & <Systems>"
        text, html = parts(digest[0])
        assert "  - Fourier\n" in text and "  - Laplace\n" in text
        assert "<li>Fourier</li>" in html and "<li>Laplace</li>" in html
        assert digest[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = digest[0]["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith(server.url + "/api/mail/unsubscribe?token=")
        assert unsubscribe in html.replace("&amp;", "&")
        assert digests(box, lazy.email) == []

        # A GET (a link scanner) changes nothing; the one-click POST needs no sign-in.
        page = requests.get(unsubscribe, timeout=30)
        assert page.status_code == 200 and "<form method=\"post\"" in page.text
        forged = requests.post(unsubscribe[:-4] + "AAAA", data="List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
        assert forged.status_code == 400
        r = requests.post(unsubscribe, data="List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
        assert r.status_code == 200 and "no more mail" in r.text

        # The next lecture: its owner hears, the unsubscribed student does not.
        third = owner.lecture(course["id"], "Z-transform")
        owner.upload(third["id"], sample)
        assert owner.wait_lecture(third["id"])[0]["status"] == "ready"
        box.wait(owner.email, "Ready: Z-transform")
        time.sleep(30)  # past the digest period
        assert len(digests(box, student.email)) == 1, [m["Subject"] for m in box.to(student.email)]

        # A file that is not a video: its owner hears why.
        broken = owner.lecture(course["id"], "Notes")
        owner.upload(broken["id"], synth.not_video())
        owner.wait_lecture(broken["id"])
        failed = box.wait(owner.email, "Failed: Notes")[0]
        assert "could not be processed" in parts(failed)[0]
    finally:
        server.stop()
        box.stop()


def in_chromium(*args):
    """One step of player-web/tests/account.mjs: the web app's account pages."""
    out = subprocess.run(["timeout", "120", "node", str(ROOT / "player-web" / "tests" / "account.mjs"), *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-1000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_links_work_in_the_browser(tmp_path, lectern_bin):
    """The web app's pages behind the links: confirming an address, asking for a reset
    link from the sign-in page, and choosing a new password."""
    if not (ROOT / "player-web" / "dist" / "index.html").exists():
        pytest.fail("player-web is not built: run `npm run build` in player-web (scripts/test.sh does)")
    box = MailServer().start()
    server = start_lectern(tmp_path / "data", box, LECTERN_WEB_DIR=str(ROOT / "player-web" / "dist"))
    try:
        ada = Api.signup(server.url, "student")
        in_chromium("verify", link(box.wait(ada.email, "Confirm your email address")[0], "#/verify?token="))
        assert ada.ok(ada.get("/api/me"))["email_verified"] is True
        in_chromium("forgot", server.url, ada.email)
        url = link(box.wait(ada.email, "Reset your password")[0], "#/reset?token=")
        in_chromium("reset", url, "chosen in the browser")
        new = requests.post(server.url + "/api/auth/login", json={"email": ada.email, "password": "chosen in the browser"}, timeout=30)
        assert new.status_code == 200
    finally:
        server.stop()
        box.stop()
