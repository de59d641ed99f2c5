"""The web UI's parts that need no server: password hashes, the security headers, failures
in plain words, what the page shows of a job."""

from __future__ import annotations

from appliance.settings import Settings
from appliance.web import passwords
from appliance.web.convert import progress_view
from appliance.web.guard import content_security_policy, cookie_secure
from appliance.web.words import plain_words


def test_a_password_hash_is_argon2id_and_checks_only_its_password():
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify(None, "correct horse battery")  # no such user
    assert not passwords.verify("not a hash", "x")


def test_new_passwords_need_ten_characters():
    assert passwords.problem("123456789") is not None
    assert passwords.problem("1234567890") is None
    assert passwords.problem("x" * 2000) is not None


def test_the_policy_allows_only_this_sites_scripts_styles_and_requests():
    csp = content_security_policy(Settings.from_env({"APPLIANCE_PUBLIC_URL": "https://c.example"}))
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert "connect-src 'self' https://c.example;" in csp
    assert "unsafe" not in csp and "*" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


def test_the_session_cookie_is_secure_behind_https():
    assert cookie_secure(Settings.from_env({"APPLIANCE_PUBLIC_URL": "https://c.example"}))
    assert not cookie_secure(Settings.from_env({}))


def test_failures_read_as_sentences_with_the_tasks_message():
    said = plain_words("CONVERSION_FAILED", "vips: not a PNG file")
    assert said.startswith("The file could not be converted") and "not a PNG file" in said
    assert plain_words("SOMETHING_NEW", "A message.") == "A message."
    assert plain_words(None, None) == "The conversion failed."


def test_the_page_sees_the_cause_of_a_failure_and_the_exported_files():
    job = {
        "id": "j",
        "status": "error",
        "tasks": [
            {"id": "u", "operation": "import/upload", "status": "finished", "result": {"form": {}}},
            {"id": "c", "operation": "convert", "status": "error", "percent": 40,
             "code": "TIMEOUT", "message": "took 300 s"},
            {"id": "e", "operation": "export/url", "status": "error", "code": "INPUT_TASK_FAILED"},
        ],
    }  # fmt: skip
    view = progress_view(job)
    assert view["code"] == "TIMEOUT" and view["error"].startswith("The conversion took too long")
    assert view["task_id"] == "c" and view["percent"] == 40 and view["files"] == []


def test_every_web_route_but_signing_in_needs_a_signed_in_user():
    from litestar.di import Provide

    from appliance.web import account, convert, pages
    from appliance.web.guard import operator, signed_in

    for handler in [*convert.ROUTES, *pages.ROUTES]:
        user = (handler.dependencies or {}).get("user")
        assert isinstance(user, Provide), handler
        assert user.dependency in (signed_in, operator), handler
    assert not any("user" in (h.dependencies or {}) for h in account.ROUTES)
