"""Fixtures for the web dashboard's tests: a central service and ``dirac-like service web`` on its
home (real processes on free loopback ports), identities for a few people, and a small HTTP
session that logs in with a login token and keeps its cookie."""

from __future__ import annotations

import http.cookiejar
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from session_watch import stop_with_session

from dirac_like.client import Client, RetryPolicy
from dirac_like.identity import load_identity, save_identity
from dirac_like.processes import ServiceProcess
from dirac_like.web_login import make_login_token

POLICY = RetryPolicy(timeout=10.0, retries=2, backoff=0.05, max_backoff=0.5)
CONFIG = """\
[store]
synchronous = "normal"

[shares.groups]
physics = 3.0
users = 1.0
"""
PEOPLE = {
    "alice": ("user", ["users", "physics"]),
    "bob": ("user", ["users"]),
    "ops": ("operator", []),
}


@dataclass
class Page:
    status: int
    headers: Any
    text: str


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect comes back as the 3xx response itself


class WebSession:
    """A browser-like HTTP session (cookies kept, redirects not followed)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), NoRedirects()
        )

    def get(self, path: str, params: dict[str, str] | None = None) -> Page:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._open(urllib.request.Request(self.base + path + query))

    def post(self, path: str, data: dict[str, str]) -> Page:
        body = urllib.parse.urlencode(data).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self.opener.open(request, timeout=30) as response:
                return Page(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as error:
            with error:
                return Page(error.code, error.headers, error.read().decode(errors="replace"))


@dataclass
class WebGrid:
    home: Path
    central: ServiceProcess
    web: ServiceProcess
    identities: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.web.endpoint

    def client(self, name: str) -> Client:
        return Client(self.central.endpoint, POLICY, identity=load_identity(self.identities[name]))

    def token(self, name: str) -> str:
        return make_login_token(load_identity(self.identities[name]), time.time())

    def login_url(self, name: str, target: str = "/") -> str:
        query = urllib.parse.urlencode({"token": self.token(name), "next": target})
        return f"{self.url.rstrip('/')}/login?{query}"

    def session(self, name: str) -> WebSession:
        """A session logged in as ``name``."""
        session = WebSession(self.url)
        page = session.get("/login", {"token": self.token(name)})
        assert page.status == 302, page.text[-500:]
        return session

    def add_person(self, name: str, role: str, groups: list[str], site: str = "") -> Path:
        path = self.home / "identities" / f"{name}.identity"
        with self.client("admin") as admin:
            save_identity(path, admin.identity_add(name, role, groups, site))
        self.identities[name] = path
        return path


def start_web_grid(
    home: Path, extra: tuple[str, ...] = (), more_config: str = ""
) -> Iterator[WebGrid]:
    """``extra``: more arguments of ``service web``; ``more_config``: more of the TOML config."""
    home.mkdir(parents=True)
    config = home / "central.toml"
    config.write_text(CONFIG + more_config)
    central = ServiceProcess.start_central(home, config)
    stop_with_session(central.pid)  # should the session be killed before the teardown
    web = None
    try:
        assert central.identity_path is not None
        grid = WebGrid(home, central, central, {"admin": central.identity_path})
        for name, (role, groups) in PEOPLE.items():
            grid.add_person(name, role, groups)
        web = ServiceProcess.start_web(
            home,
            central.endpoint,
            central.identity_path,
            config,
            extra=("--refresh", "1", "--sample-seconds", "1", *extra),
        )
        stop_with_session(web.pid)
        grid.web = web
        yield grid
    finally:
        if web is not None:
            web.stop()
        central.stop()


@pytest.fixture(scope="module")
def web_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebGrid]:
    """A central service with the dashboard beside it; people: admin, alice and bob (users),
    ops (operator). No pilots: jobs submitted stay Waiting."""
    yield from start_web_grid(tmp_path_factory.mktemp("web") / "home")
