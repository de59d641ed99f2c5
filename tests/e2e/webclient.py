"""A person's browser session on the web UI, over HTTP (httpx keeps the cookie): invited by
the operator's command, signed in, sending the page's CSRF token with each change."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.e2e.conftest import Deployment

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


def invite(dep: Deployment, email: str, operator: bool = False) -> str:
    return dep.cli("users", "invite", email, *(["--operator"] if operator else [])).strip()


class Browser:
    def __init__(self, dep: Deployment) -> None:
        self.http = httpx.Client(base_url=dep.url, timeout=60, follow_redirects=False)
        self.csrf = ""

    def page(self, path: str) -> httpx.Response:
        r = self.http.get(path)
        if r.status_code == 200 and "text/html" in r.headers.get("content-type", ""):
            self.csrf = csrf_of(r.text) if CSRF.search(r.text) else self.csrf
        return r

    def post(self, path: str, **fields: str) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **fields})

    def post_json(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, json=body, headers={"X-CSRF-Token": self.csrf})


def signed_in(dep: Deployment, operator: bool = False) -> tuple[Browser, str]:
    """A new person who accepted an invitation (and so is signed in), and their e-mail."""
    email = f"w{uuid.uuid4().hex[:8]}@example.test"
    link = invite(dep, email, operator)
    browser = Browser(dep)
    path = httpx.URL(link).path
    assert browser.page(path).status_code == 200
    r = browser.post(path, password=PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    assert browser.page("/").status_code == 200
    return browser, email
