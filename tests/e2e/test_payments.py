"""Buying a course through Stripe Checkout, against a local server that speaks the
Stripe endpoints and webhook signatures Lectern uses (fake_stripe.py; Stripe itself is
not reachable here). Only a verified `checkout.session.completed` enrolls; forged,
replayed or tampered events change nothing; a redelivered event is applied once; a
refund or a dispute takes the course back."""
import pytest

from conftest import Api, Server, free_port
from fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe


@pytest.fixture
def shop(tmp_path, lectern_bin):
    stripe = FakeStripe()
    port = free_port()
    server = Server(tmp_path / "data", port=port, env={
        "LECTERN_STRIPE_SECRET_KEY": SECRET_KEY, "LECTERN_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LECTERN_STRIPE_API_BASE": stripe.url, "LECTERN_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }).start()
    yield server, stripe
    server.stop()
    stripe.stop()


def test_without_a_provider_a_priced_course_cannot_be_bought(server):
    owner = Api.signup(server.url, "owner")
    course = owner.course(title="Priced", price_cents=2500)
    student = Api.signup(server.url, "student")
    r = student.post(f"/api/courses/{course['id']}/checkout")
    assert r.status_code == 402 and r.json()["error"]["code"] == "purchase_required"
    assert student.ok(student.get(f"/api/courses/{course['id']}"))["can_buy"] is False
    assert requests_post(server.url + "/api/payments/stripe/webhook", b"{}").status_code == 404


def requests_post(url, body, headers=None):
    import requests
    return requests.post(url, data=body, headers=headers or {}, timeout=30)


def test_only_a_verified_payment_enrolls_and_a_refund_takes_it_back(shop):
    server, stripe = shop
    hook = server.url + "/api/payments/stripe/webhook"
    owner = Api.signup(server.url, "owner")
    course = owner.course(title="Signals, paid", price_cents=1900)
    lecture = owner.lecture(course["id"], "Lesson 1")
    student = Api.signup(server.url, "student")
    enrolled = lambda api=student: api.ok(api.get(f"/api/courses/{course['id']}"))["enrolled"]
    assert student.ok(student.get(f"/api/courses/{course['id']}"))["can_buy"] is True

    opened = student.ok(student.post(f"/api/courses/{course['id']}/checkout"), 201)
    session = stripe.sessions[opened["session_id"]]
    assert opened["url"] == session["url"]
    # The server set the price, in the currency, with where to come back; the key was Lectern's.
    assert (session["amount_total"], session["currency"], session["mode"]) == (1900, "usd", "payment")
    assert session["metadata"] == {"course_id": course["id"], "user_id": student.user["id"]}
    assert session["success_url"] == f"{server.url}/#/courses/{course['id']}?paid=1"
    assert {k.lower() for k in stripe.requests[-1][1]} >= {"idempotency-key", "authorization"}
    assert not enrolled()

    paid = stripe.pay(opened["session_id"])
    # Forged (another secret), replayed (older than five minutes), unsigned: refused.
    assert stripe.deliver(hook, paid, secret="whsec_someone_else").status_code == 400
    assert stripe.deliver(hook, paid, t=int(__import__("time").time()) - 600).status_code == 400
    assert requests_post(hook, b'{"id": "evt_x", "type": "checkout.session.completed"}').status_code == 400
    assert not enrolled()

    r = stripe.deliver(hook, paid)
    assert r.status_code == 200, r.text
    assert enrolled()
    mine = student.ok(student.post(f"/api/courses/{course['id']}/enroll"), 200)
    assert (mine["kind"], mine["price_cents"]) == ("purchase", 1900)
    # Delivered again (Stripe retries): applied once, nothing changes.
    assert stripe.deliver(hook, paid).status_code == 200
    assert student.post(f"/api/courses/{course['id']}/checkout").status_code == 409

    # A checkout paid for less than it was opened for enrolls no one.
    other = Api.signup(server.url, "student")
    cheap = other.ok(other.post(f"/api/courses/{course['id']}/checkout"), 201)
    assert stripe.deliver(hook, stripe.pay(cheap["session_id"], amount=1)).status_code == 400
    assert not enrolled(other)

    # A full refund takes the course back; a partial one does not.
    intent = session["payment_intent"]
    assert stripe.deliver(hook, stripe.refund(intent, full=False)).status_code == 200
    assert enrolled()
    assert stripe.deliver(hook, stripe.refund(intent)).status_code == 200
    assert not enrolled()
    assert student.post(f"/api/lectures/{lecture['id']}/playback").status_code == 403

    # A dispute does too.
    third = Api.signup(server.url, "student")
    bought = third.ok(third.post(f"/api/courses/{course['id']}/checkout"), 201)
    assert stripe.deliver(hook, stripe.pay(bought["session_id"])).status_code == 200
    assert enrolled(third)
    assert stripe.deliver(hook, stripe.dispute(stripe.sessions[bought["session_id"]]["payment_intent"])).status_code == 200
    assert not enrolled(third)
    # Events Lectern has nothing to do for are acknowledged.
    assert stripe.deliver(hook, stripe.event("invoice.paid", {"id": "in_1"})).status_code == 200
