"""The web UI when the operator opens registration: anyone may sign up (one account per
e-mail); and failed sign-ins count against the address like bad API keys."""

from __future__ import annotations

import random

import pytest

from tests.e2e.webclient import PASSWORD, Browser

pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)
DEPLOYMENT_ENV = {"APPLIANCE_WEB_REGISTRATION": "open", "APPLIANCE_AUTH_FAILURES_PER_MINUTE": "3"}


def test_anyone_may_sign_up_once_per_email(deployment):
    browser = Browser(deployment)
    assert "Create one" in browser.page("/sign-in").text
    browser.page("/register")
    r = browser.post("/register", email="open@example.test", password=PASSWORD)
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert "open@example.test" in browser.page("/").text
    again = Browser(deployment)
    again.page("/register")
    taken = again.post("/register", email="open@example.test", password=PASSWORD + "!")
    assert taken.status_code == 409 and "has an account already" in taken.text
    weak = again.post("/register", email="other@example.test", password="short")
    assert weak.status_code == 400


def test_repeated_wrong_passwords_are_throttled_per_address(deployment):
    browser = Browser(deployment)
    # An address of its own (loopback is a trusted proxy), whose count starts at 0 whatever
    # other tests sharing this Redis failed from 127.0.0.1 this minute.
    browser.http.headers["X-Forwarded-For"] = f"198.51.100.{random.randint(1, 254)}"
    browser.page("/sign-in")
    answers = [
        browser.post("/sign-in", email="nobody@example.test", password="wrong password").status_code
        for _ in range(4)
    ]
    assert answers == [401, 401, 401, 429]
