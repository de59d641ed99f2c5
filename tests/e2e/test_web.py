"""The web UI over HTTP: invitations, sign-in, sessions, CSRF, the security headers, and that
no web route reaches another user's jobs, tasks or keys."""

from __future__ import annotations

import json

import httpx
import pytest
import pyvips

from tests.e2e.webclient import PASSWORD, Browser, invite, signed_in

pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)


def test_pages_send_a_visitor_to_sign_in(deployment):
    browser = Browser(deployment)
    for path in ("/", "/history", "/keys", "/usage", "/operator"):
        r = browser.page(path)
        assert (r.status_code, r.headers["location"]) == (303, "/sign-in"), path
    r = browser.http.get("/ui/jobs/00000000-0000-0000-0000-000000000000/events")
    assert r.status_code == 401 and r.json()["code"] == "SIGN_IN"


def test_an_invitation_sets_a_password_once_then_sign_in_works(deployment):
    browser, email = signed_in(deployment)
    assert email in browser.page("/").text
    visitor = Browser(deployment)
    form = visitor.page("/sign-in")
    cookie = form.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    wrong = visitor.post("/sign-in", email=email, password="not the password")
    assert wrong.status_code == 401 and "wrong" in wrong.text
    right = visitor.post("/sign-in", email=email, password=PASSWORD)
    assert (right.status_code, right.headers["location"]) == (303, "/")
    assert email in visitor.page("/").text


def test_an_invitation_link_works_once(deployment):
    link = invite(deployment, "once@example.test")
    first = Browser(deployment)
    path = httpx.URL(link).path
    first.page(path)
    assert first.post(path, password=PASSWORD).status_code == 303
    second = Browser(deployment)
    assert second.page(path).status_code == 404
    assert second.post(path, password="another password!").status_code == 403  # no session yet


def test_a_short_password_is_refused(deployment):
    link = httpx.URL(invite(deployment, "short@example.test")).path
    browser = Browser(deployment)
    browser.page(link)
    r = browser.post(link, password="short")
    assert r.status_code == 400 and "at least 10 characters" in r.text


def test_changes_without_the_sessions_csrf_token_are_refused(deployment):
    browser, _ = signed_in(deployment)
    no_token = browser.http.post("/keys", data={"name": "x"})
    assert no_token.status_code == 403
    wrong = browser.http.post("/keys", data={"name": "x", "csrf": "forged"})
    assert wrong.status_code == 403
    api = browser.http.post("/ui/jobs", json={"filename": "a.png", "output_format": "jpg"})
    assert api.status_code == 403 and api.json()["code"] == "FORBIDDEN"
    other, _ = signed_in(deployment)  # another session's token is no good either
    assert browser.http.post("/keys", data={"name": "x", "csrf": other.csrf}).status_code == 403
    assert "no keys yet" in browser.page("/keys").text.lower()


def test_pages_carry_a_strict_content_security_policy(deployment):
    browser, _ = signed_in(deployment)
    for path in ("/", "/sign-in", "/keys", "/history"):
        headers = browser.page(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
    html = browser.page("/").text
    assert "<script>" not in html and " style=" not in html and " on" + "click" not in html


def test_registration_is_by_invitation_unless_the_operator_opens_it(deployment):
    browser = Browser(deployment)
    assert browser.page("/register").status_code == 404
    browser.page("/sign-in")
    r = browser.post("/register", email="new@example.test", password=PASSWORD)
    assert r.status_code == 404


def test_sign_out_ends_the_session(deployment):
    browser, _ = signed_in(deployment)
    assert browser.post("/sign-out").status_code == 303
    assert browser.page("/").status_code == 303


def test_a_disabled_users_session_stops_at_once(deployment):
    browser, email = signed_in(deployment)
    deployment.cli("users", "disable", email)
    assert browser.page("/").status_code == 303


def test_a_key_made_on_the_keys_page_works_and_stops_when_revoked(deployment):
    browser, _ = signed_in(deployment)
    made = browser.post("/keys", name="laptop")
    assert made.status_code == 200, made.text
    key = made.text.split('id="new-key" class="key">')[1].split("<")[0]
    with deployment.client(key) as api:
        assert api.get("/v2/jobs").status_code == 200
        (row,) = deployment.sql("SELECT id FROM api_keys WHERE name = 'laptop'")
        assert browser.post(f"/keys/{row['id']}/revoke").status_code == 303
        assert api.get("/v2/jobs").status_code == 401
    assert "revoked" in browser.page("/keys").text


def test_no_web_route_reaches_another_users_jobs_tasks_or_keys(deployment, png_file):
    alice, _ = signed_in(deployment)
    bob, _ = signed_in(deployment)
    made = alice.post_json("/ui/jobs", {"filename": "photo.png", "output_format": "jpg"})
    assert made.status_code == 201, made.text
    job = made.json()
    form = job["upload"]["form"]
    with open(png_file, "rb") as fh:
        up = httpx.post(form["url"], data=form["parameters"], files={"file": fh})
    assert up.status_code == 201
    assert "<td>photo.png</td>" in alice.page("/history").text
    alice.post("/keys", name="alices")
    (key,) = deployment.sql("SELECT id FROM api_keys WHERE name = 'alices'")

    assert bob.http.get(f"/ui/jobs/{job['id']}/events").status_code == 404
    zipped = bob.post_json("/ui/archives", {"task_ids": [job["task_id"]]})
    assert zipped.status_code in (404, 422), zipped.text
    assert bob.post(f"/history/{job['id']}/delete").status_code == 404
    assert bob.post(f"/keys/{key['id']}/revoke").status_code == 404
    assert "photo.png" not in bob.page("/history").text
    assert "alices" not in bob.page("/keys").text
    assert bob.page("/operator").status_code == 403
    # and all of Alice's is still there
    assert deployment.sql("SELECT revoked_at FROM api_keys WHERE id = %s", key["id"]) == [
        {"revoked_at": None}
    ]
    assert alice.http.get(f"/ui/jobs/{job['id']}/events").status_code == 200


def test_progress_events_end_with_the_exported_files(deployment, png_file):
    browser, _ = signed_in(deployment)
    job = browser.post_json(
        "/ui/jobs", {"filename": "photo.png", "output_format": "webp", "options": {"width": 50}}
    ).json()
    form = job["upload"]["form"]
    with open(png_file, "rb") as fh:
        httpx.post(form["url"], data=form["parameters"], files={"file": fh})
    # The stream ends by itself once the job has ended.
    r = browser.http.get(f"/ui/jobs/{job['id']}/events")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-accel-buffering"] == "no"  # nginx passes events on unbuffered
    events = r.text.splitlines()
    data = events[events.index("event: end") + 1]
    assert "event: end" in events
    assert '"status":"finished"' in data and '"percent":100' in data and "photo.webp" in data
    (exported,) = json.loads(data.removeprefix("data: "))["files"]
    webp = pyvips.Image.new_from_buffer(httpx.get(exported["url"]).content, "")
    assert (webp.get("vips-loader"), webp.width) == ("webpload_buffer", 50)


def test_the_operator_page_shows_users_queues_and_engines(deployment):
    browser, email = signed_in(deployment, operator=True)
    html = browser.page("/operator").text
    assert email in html and "light" in html and "office" in html
    assert "FAILING" not in html or "ok" in html
