"""The live page's server side against a real daemon process: login, cookie, CSRF, origin.

What a browser does is in test_live_page_browser.py; here the requests are made by hand, with
the headers a browser would send, so each rule is shown to refuse what it must.
"""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.daemon import Daemon

pytestmark = pytest.mark.process


@pytest.fixture
def held(tmp_path: Path) -> Daemon:
    """The fake-pipeline daemon whose jobs wait for Apple's verdict for ten minutes: cancellable."""
    return Daemon(tmp_path, env={"FAKE_PARTS": "2", "FAKE_PART_SECONDS": "0.05",
                                 "FAKE_WAIT_SECONDS": "600"}).start()


class Browserish:
    """A cookie jar and same-origin headers, as the page's fetch() sends them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.cookie = ""
        self.csrf = ""

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: Any = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        sent = {"Sec-Fetch-Site": "same-origin", **({"Cookie": self.cookie} if self.cookie else {}),
                **(headers or {})}
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
        finally:
            conn.close()

    def log_in(self) -> str:
        opened = self.daemon.cli("open", "--no-browser")
        assert opened.returncode == 0, opened.stderr
        url = opened.stdout.strip()
        assert url.startswith(f"http://127.0.0.1:{self.daemon.port}/login?token=")
        status, headers, _ = self.request("GET", urlsplit(url).path + "?" + urlsplit(url).query,
                                          {"Sec-Fetch-Site": "none"})
        assert status == 303 and headers["location"] == "/"
        set_cookie = headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
        self.cookie = set_cookie.split(";", 1)[0]
        assert self.cookie.startswith(f"notaryd-session-{self.daemon.port}=")
        status, _, body = self.request("GET", "/ui/session")
        session = json.loads(body)
        assert status == 200 and session["logged_in"] is True
        self.csrf = session["csrf_token"]
        return url


def test_the_page_without_login_shows_no_job(daemon: Daemon) -> None:
    job = daemon.submit(daemon.archive("Secret-Project.zip"))
    page = Browserish(daemon)

    status, headers, html = page.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert "<script src=\"/static/app.js\"" in html and not re.search(r"<script>", html)
    assert "Secret-Project" not in html and job["id"] not in html
    status, _, body = page.request("GET", "/ui/session")
    assert json.loads(body) == {"version": json.loads(body)["version"], "logged_in": False}
    for path in ("/v1/jobs", f"/v1/jobs/{job['id']}", "/v1/events"):
        assert page.request("GET", path)[0] == 401
    status, headers, script = page.request("GET", "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script
    assert page.request("GET", "/static/../api.py")[0] == 404
    assert page.request("GET", "/static/index.htm")[0] == 404


def test_a_login_link_works_once_and_the_cookie_reads_the_api(daemon: Daemon) -> None:
    job = daemon.submit(daemon.archive("Game.zip"))
    page = Browserish(daemon)
    url = page.log_in()

    status, headers, _ = Browserish(daemon).request("GET", url[url.index("/login"):])
    assert status == 303 and headers["location"] == "/?login=failed" and "set-cookie" not in headers
    status, _, body = page.request("GET", "/v1/jobs")
    assert status == 200 and job["id"] in body
    status, _, body = page.request("GET", f"/v1/jobs/{job['id']}")
    assert status == 200 and json.loads(body)["path"].endswith("Game.zip")


def test_the_cookie_is_refused_cross_origin_and_beyond_the_pages_routes(held: Daemon) -> None:
    daemon = held
    job = daemon.submit(daemon.archive("Game.zip"))
    daemon.wait_for(job["id"], "waiting")
    page = Browserish(daemon)
    page.log_in()
    other = f"http://127.0.0.1:{daemon.port + 1}"

    assert page.request("GET", "/v1/jobs", {"Sec-Fetch-Site": "same-site"})[0] == 403
    assert page.request("GET", "/v1/jobs", {"Origin": other})[0] == 403
    cancel = f"/v1/jobs/{job['id']}/cancel"
    status, _, body = page.request("POST", cancel, {"Origin": other, "Sec-Fetch-Site": "same-site",
                                                    "X-CSRF-Token": page.csrf})
    assert status == 403, body
    status, _, body = page.request("POST", cancel)  # same origin, no CSRF token
    assert status == 403 and "X-CSRF-Token" in body
    assert page.request("POST", cancel, {"X-CSRF-Token": "wrong"})[0] == 403
    # what the page never needs: a new archive, a login link
    archive = str(daemon.archive("Other.zip"))
    assert page.request("POST", "/v1/jobs", {"X-CSRF-Token": page.csrf}, {"path": archive})[0] == 401
    assert page.request("POST", "/v1/login-links", {"X-CSRF-Token": page.csrf})[0] == 401
    assert daemon.job(job["id"])["state"] == "waiting"

    status, _, body = page.request("POST", cancel, {"X-CSRF-Token": page.csrf})
    assert status == 200 and json.loads(body)["state"] == "cancelled"


def test_resume_queues_a_cancelled_job_again_and_refuses_a_live_one(held: Daemon) -> None:
    daemon = held
    job = daemon.submit(daemon.archive("Game.zip"))
    page = Browserish(daemon)
    page.log_in()
    csrf = {"X-CSRF-Token": page.csrf}
    daemon.wait_for(job["id"], "waiting")
    status, _, body = page.request("POST", f"/v1/jobs/{job['id']}/resume", csrf)
    assert status == 409 and "only a failed or cancelled job" in body
    page.request("POST", f"/v1/jobs/{job['id']}/cancel", csrf)

    status, _, body = page.request("POST", f"/v1/jobs/{job['id']}/resume", csrf)

    assert status == 201, body
    again = json.loads(body)
    assert again["id"] != job["id"] and again["path"] == job["path"]
    assert again["state"] == "queued"
    daemon.wait_for(again["id"], "waiting")
    # the bearer token works too (the CLI's credential), and one job per archive still holds
    status, reply = daemon.request("POST", f"/v1/jobs/{job['id']}/resume")
    assert status == 409 and again["id"] in reply["error"]
    daemon.request("DELETE", f"/v1/jobs/{again['id']}")
    status, reply = daemon.request("POST", f"/v1/jobs/{again['id']}/resume")
    assert status == 201 and reply["path"] == job["path"]


def test_the_host_guard_covers_the_page(daemon: Daemon) -> None:
    page = Browserish(daemon)
    for path in ("/", "/static/app.js", "/login?token=x", "/ui/session"):
        assert page.request("GET", path, {"Host": f"rebound.example:{daemon.port}"})[0] == 421


def test_open_starts_the_browser_only_on_a_desktop(daemon: Daemon, tmp_path: Path) -> None:
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{opened}'\n")
    browser.chmod(0o755)
    env = {"BROWSER": str(browser), "DISPLAY": "", "WAYLAND_DISPLAY": ""}

    headless = daemon.cli("open", env=env)
    assert headless.returncode == 0 and not opened.exists()
    desktop = daemon.cli("open", env={**env, "DISPLAY": ":0"})

    assert desktop.returncode == 0, desktop.stderr
    assert opened.read_text().split() == [desktop.stdout.strip()]
    assert headless.stdout.strip() != desktop.stdout.strip()  # a new one-time link each time
