"""A local server that speaks the Stripe endpoints and webhook signatures Lectern uses
(Stripe itself is not reachable here): `POST /v1/checkout/sessions` as Stripe answers
it, and events for those sessions delivered to Lectern's webhook, signed as Stripe
signs them (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`)."""
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

SECRET_KEY = "sk_test_lectern"
WEBHOOK_SECRET = "whsec_test_lectern"


def signature(body: bytes, t=None, secret=WEBHOOK_SECRET):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class FakeStripe:
    def __init__(self):
        self.sessions = {}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                fake.requests.append((self.path, dict(self.headers), body))
                if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                    return self.answer(401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})
                if self.path != "/v1/checkout/sessions":
                    return self.answer(404, {"error": {"message": "Unrecognized request URL"}})
                form = dict(urllib.parse.parse_qsl(body))
                session = {
                    "id": "cs_test_" + os.urandom(12).hex(),
                    "object": "checkout.session",
                    "url": f"{fake.url}/pay/{len(fake.sessions)}",
                    "mode": form["mode"],
                    "amount_total": int(form["line_items[0][price_data][unit_amount]"]) * int(form["line_items[0][quantity]"]),
                    "currency": form["line_items[0][price_data][currency]"],
                    "client_reference_id": form.get("client_reference_id"),
                    "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                    "success_url": form["success_url"],
                    "cancel_url": form["cancel_url"],
                    "payment_status": "unpaid",
                    "payment_intent": None,
                    "form": form,
                }
                fake.sessions[session["id"]] = session
                self.answer(200, {k: v for k, v in session.items() if k != "form"})

            def answer(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()

    def event(self, kind, obj):
        return {"id": "evt_" + os.urandom(12).hex(), "object": "event", "type": kind, "created": int(time.time()),
                "data": {"object": obj}, "livemode": False}

    def deliver(self, webhook_url, event, t=None, secret=WEBHOOK_SECRET):
        body = json.dumps(event).encode()
        return requests.post(webhook_url, data=body, timeout=30,
                             headers={"Content-Type": "application/json", "Stripe-Signature": signature(body, t, secret)})

    def pay(self, session_id, amount=None):
        """The student paid: the session completes (as Stripe would tell Lectern)."""
        session = self.sessions[session_id]
        session["payment_status"] = "paid"
        session["payment_intent"] = "pi_" + os.urandom(12).hex()
        obj = {k: v for k, v in session.items() if k != "form"}
        if amount is not None:
            obj["amount_total"] = amount
        return self.event("checkout.session.completed", obj)

    def refund(self, payment_intent, full=True):
        return self.event("charge.refunded", {"id": "ch_" + os.urandom(8).hex(), "object": "charge",
                                              "payment_intent": payment_intent, "refunded": full})

    def dispute(self, payment_intent):
        return self.event("charge.dispute.created", {"id": "dp_" + os.urandom(8).hex(), "object": "dispute",
                                                     "payment_intent": payment_intent})
