"""Accounts, roles, courses, lectures, enrollment and the error shape, over HTTP."""
import subprocess

import requests

from conftest import Api, BIN


def error_of(r):
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_signup_login_and_me(server):
    owner = Api.signup(server.url, "owner", email="Ada@Example.org")
    assert owner.user["email"] == "ada@example.org"
    assert owner.user["role"] == "owner"
    r = requests.post(server.url + "/api/auth/login", json={"email": "ADA@example.org", "password": owner.password})
    assert r.status_code == 200 and r.json()["user"]["id"] == owner.user["id"]
    me = Api(server.url, r.json()["token"]).ok(Api(server.url, r.json()["token"]).get("/api/me"))
    assert me["role"] == "owner"


def test_signup_refuses_bad_input_and_duplicates(server):
    base = server.url + "/api/auth/signup"
    cases = [
        {"email": "nope", "password": "long enough", "name": "A", "role": "student"},
        {"email": "a@b.org", "password": "short", "name": "A", "role": "student"},
        {"email": "a@b.org", "password": "long enough", "name": "", "role": "student"},
        {"email": "a@b.org", "password": "long enough", "name": "A", "role": "admin"},
    ]
    for body in cases:
        r = requests.post(base, json=body)
        assert r.status_code == 400, (body, r.text)
        assert error_of(r) == "invalid"
    ok = {"email": "dup@b.org", "password": "long enough", "name": "A", "role": "student"}
    assert requests.post(base, json=ok).status_code == 201
    r = requests.post(base, json=ok)
    assert r.status_code == 409 and error_of(r) == "conflict"
    r = requests.post(base, data="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r) == "invalid"


def test_login_failures_look_the_same(server):
    Api.signup(server.url, "student", email="s@x.org")
    for body in [{"email": "s@x.org", "password": "wrong password"}, {"email": "ghost@x.org", "password": "wrong password"}]:
        r = requests.post(server.url + "/api/auth/login", json=body)
        assert r.status_code == 401 and error_of(r) == "bad_credentials"


def test_every_api_route_needs_a_valid_token(server, owner):
    course = owner.course()
    lecture = owner.lecture(course["id"])
    routes = [
        ("GET", "/api/me"), ("GET", "/api/me/courses"), ("GET", "/api/courses"), ("POST", "/api/courses"),
        ("GET", f"/api/courses/{course['id']}"), ("PATCH", f"/api/courses/{course['id']}"),
        ("DELETE", f"/api/courses/{course['id']}"), ("POST", f"/api/courses/{course['id']}/lectures"),
        ("POST", f"/api/courses/{course['id']}/enroll"), ("GET", f"/api/lectures/{lecture['id']}"),
        ("PATCH", f"/api/lectures/{lecture['id']}"), ("DELETE", f"/api/lectures/{lecture['id']}"),
        ("POST", f"/api/lectures/{lecture['id']}/playback"), ("GET", "/api/events"),
    ]
    forged = owner.token[:-4] + ("AAAA" if not owner.token.endswith("AAAA") else "BBBB")
    for method, path in routes:
        for headers in [{}, {"Authorization": "Bearer garbage"}, {"Authorization": f"Bearer {forged}"}, {"Authorization": owner.token}]:
            r = requests.request(method, server.url + path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert error_of(r) == "unauthenticated"


def test_roles_and_ownership_are_enforced(server, owner, student):
    r = student.post("/api/courses", json={"title": "Mine"})
    assert r.status_code == 403 and error_of(r) == "forbidden"
    course = owner.course()
    other_owner = Api.signup(server.url, "owner")
    r = other_owner.patch(f"/api/courses/{course['id']}", json={"title": "Stolen"})
    assert r.status_code == 403
    r = other_owner.post(f"/api/courses/{course['id']}/lectures", json={"title": "Sneaky"})
    assert r.status_code == 403
    r = other_owner.delete(f"/api/courses/{course['id']}")
    assert r.status_code == 403
    lecture = owner.lecture(course["id"])
    assert other_owner.patch(f"/api/lectures/{lecture['id']}", json={"title": "x"}).status_code == 403
    assert student.delete(f"/api/lectures/{lecture['id']}").status_code == 403
    # An unpublished course does not exist for others.
    hidden = owner.course(published=False)
    assert student.get(f"/api/courses/{hidden['id']}").status_code == 404
    assert owner.get(f"/api/courses/{hidden['id']}").status_code == 200


def test_admin_from_the_cli_may_edit_any_course(server, owner):
    out = subprocess.run(
        [str(BIN), "user", "create", "--email", "root@example.org", "--name", "Root", "--role", "admin"],
        env={**server.env, "LECTERN_NEW_PASSWORD": "admin password 1"}, capture_output=True, text=True, check=True,
    )
    assert '"role":"admin"' in out.stdout
    r = requests.post(server.url + "/api/auth/login", json={"email": "root@example.org", "password": "admin password 1"})
    admin = Api(server.url, r.json()["token"])
    course = owner.course(published=False)
    updated = admin.ok(admin.patch(f"/api/courses/{course['id']}", json={"title": "Moderated"}))
    assert updated["title"] == "Moderated"


def test_course_and_lecture_lifecycle(server, owner, student):
    course = owner.course(title="Linear Algebra", price_cents=0)
    patched = owner.ok(owner.patch(f"/api/courses/{course['id']}", json={"description": "Vectors", "category": "math"}))
    assert patched["description"] == "Vectors" and patched["title"] == "Linear Algebra"
    l1 = owner.lecture(course["id"], "Vectors")
    l2 = owner.lecture(course["id"], "Matrices")
    assert l1["status"] == "awaiting_upload" and l2["position"] == l1["position"] + 1
    owner.ok(owner.patch(f"/api/lectures/{l2['id']}", json={"position": 0}))
    detail = student.ok(student.get(f"/api/courses/{course['id']}"))
    assert [l["title"] for l in detail["lectures"]] == ["Matrices", "Vectors"]
    assert detail["lecture_count"] == 2 and detail["enrolled"] is False
    assert owner.delete(f"/api/lectures/{l1['id']}").status_code == 204
    assert owner.get(f"/api/lectures/{l1['id']}").status_code == 404
    assert owner.delete(f"/api/courses/{course['id']}").status_code == 204
    assert owner.get(f"/api/courses/{course['id']}").status_code == 404
    assert owner.get(f"/api/lectures/{l2['id']}").status_code == 404


def test_search_filters_and_paginates_published_courses(server, owner, student):
    for i in range(7):
        owner.course(title=f"Thermodynamics {i}", category="physics")
    owner.course(title="Organic chemistry", category="chemistry", description="carbon")
    owner.course(title="Thermodynamics draft", category="physics", published=False)
    page = student.ok(student.get("/api/courses", params={"q": "thermo", "per_page": 3, "page": 1}))
    assert page["total"] == 7 and len(page["items"]) == 3
    last = student.ok(student.get("/api/courses", params={"q": "thermo", "per_page": 3, "page": 3}))
    assert len(last["items"]) == 1
    assert all("draft" not in c["title"] for c in page["items"] + last["items"])
    chem = student.ok(student.get("/api/courses", params={"category": "chemistry"}))
    assert [c["title"] for c in chem["items"]] == ["Organic chemistry"]
    two_words = student.ok(student.get("/api/courses", params={"q": "chem organic"}))
    assert [c["title"] for c in two_words["items"]] == ["Organic chemistry"]
    by_description = student.ok(student.get("/api/courses", params={"q": "CARBON"}))
    assert by_description["total"] == 1
    wildcard = student.ok(student.get("/api/courses", params={"q": "%"}))
    assert wildcard["total"] == 0
    mine = owner.ok(owner.get("/api/courses", params={"mine": "true", "per_page": 100}))
    assert mine["total"] == 9
    assert student.get("/api/courses", params={"page": "x"}).status_code == 400


def test_enrollment_free_and_by_code(server, owner, student):
    free = owner.course(title="Free course")
    paid = owner.course(title="Paid course", price_cents=4900)
    joined = student.ok(student.post(f"/api/courses/{free['id']}/enroll"), 201)
    assert joined["kind"] == "subscription"
    assert student.post(f"/api/courses/{free['id']}/enroll").status_code == 200
    r = student.post(f"/api/courses/{paid['id']}/enroll")
    assert r.status_code == 402 and error_of(r) == "purchase_required" and "$49.00" in r.json()["error"]["message"]
    # Saying "I paid" pays for nothing.
    r = student.post(f"/api/courses/{paid['id']}/enroll", json={"purchase": True})
    assert r.status_code == 402 and error_of(r) == "purchase_required"
    code = owner.ok(owner.post(f"/api/courses/{paid['id']}/codes", json={"max_uses": 1}), 201)["code"]
    bought = student.ok(student.post(f"/api/courses/{paid['id']}/enroll", json={"code": code}), 201)
    assert bought["kind"] == "code" and bought["price_cents"] == 0
    mine = student.ok(student.get("/api/me/courses"))
    assert {c["id"] for c in mine["items"]} == {free["id"], paid["id"]}
    hidden = owner.course(published=False)
    assert student.post(f"/api/courses/{hidden['id']}/enroll").status_code == 404


def test_health_readiness_and_unknown_routes(server):
    assert requests.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = requests.get(server.url + "/readyz").json()
    assert ready["status"] == "ready"
    assert ready["backends"] == {"database": "ok", "storage": "ok", "queue": "ok"}
    r = requests.get(server.url + "/api/nothing-here")
    assert r.status_code == 404 and error_of(r) == "not_found"
    r = requests.put(server.url + "/api/courses")
    assert r.status_code == 405 and error_of(r) == "method_not_allowed"
