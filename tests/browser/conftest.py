"""Browser tests: one live server for the session, Playwright driving /usr/bin/chromium.

The server runs in a thread on a free port over its own SQLite file, migrated and
seeded with a small demo alliance (the demo accounts, password ``medalliance-demo``).
Tests are marked ``browser``: without chromium they are skipped, in CI they fail
(tests/conftest.py). Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from medalliance import wiring
from medalliance.app import create_app
from medalliance.config import Settings
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.demo import seed
from medalliance.kernel.roles import Role
from tests.conftest import CHROMIUM, TEST_SECRET

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = seed.DEMO_PASSWORD
DEMO_PATIENTS = 24  # enough for every chart section, quick to seed
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}
USERNAME_BY_ROLE: dict[Role, str] = {}
for _username, _role, _inst, _slot in seed.DEMO_ACCOUNTS:
    USERNAME_BY_ROLE.setdefault(_role, _username)

pytestmark = pytest.mark.browser


@dataclass(frozen=True, slots=True)
class LiveServer:
    base_url: str
    database_url: str
    factory: sessionmaker[Session]
    settings: Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not CHROMIUM.exists():
        pytest.skip("no chromium")  # the autouse rule has already failed this in CI
    url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'browser.db'}"
    wiring.load_all()
    migrate.upgrade(url)
    seed.seed_demo(url, patients=DEMO_PATIENTS)
    settings = Settings(database_url=url, secret_key=TEST_SECRET, demo_mode=False)
    factory = build_session_factory(build_engine(url))
    app = create_app(settings, factory)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", url, factory, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser(live_server: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser: Any, live_server: LiveServer) -> Iterator[Callable[..., Any]]:
    """Pages in fresh contexts (own cookies and localStorage), closed after the test."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = LAPTOP, locale: str = "zh-CN") -> Any:
        context = browser.new_context(
            base_url=live_server.base_url, viewport=viewport, locale=locale
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page: Any, username: str, password: str = PASSWORD) -> None:
    """Fill in the login form (the one on screen, keeping its ``next``, or a new one)."""
    if "/login" not in page.url:
        page.goto("/login")
    page.fill("#f-username", username)
    page.fill("#f-password", password)
    page.click("#login-form button[type=submit]")


@pytest.fixture
def logged_in_page(new_page: Callable[..., Any]) -> Callable[..., Any]:
    """``logged_in_page(Role.CLINICIAN)`` (or a demo username): a page on the landing."""

    def make(who: Role | str, **kwargs: Any) -> Any:
        page = new_page(**kwargs)
        username = USERNAME_BY_ROLE[who] if isinstance(who, Role) else who
        log_in(page, username)
        page.wait_for_url("**/")
        return page

    return make


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    def take(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take


@dataclass(frozen=True, slots=True)
class DemoPatients:
    readable_id: str  # the patient with the most on the chart that the user may read
    readable_name: str
    readable_initials: str
    denied_id: str  # one the user may find but not read (no care relationship)


@pytest.fixture(scope="session")
def demo_patients(live_server: LiveServer) -> Callable[[str], DemoPatients]:
    """Patients picked for a demo account through the access policy itself."""
    from sqlalchemy import select

    from medalliance.access import policy
    from medalliance.access.models import User
    from medalliance.access.permissions import permissions_for
    from medalliance.domains.patients import service as patients_service
    from medalliance.domains.patients.models import Person
    from medalliance.domains.records import timeline
    from medalliance.kernel.actor import Actor

    cache: dict[str, DemoPatients] = {}

    def pick(username: str) -> DemoPatients:
        if username in cache:
            return cache[username]
        with live_server.factory() as session:
            user = session.scalar(select(User).where(User.username == username))
            assert user is not None
            actor = Actor(
                user_id=user.id,
                username=user.username,
                role=user.role,
                institution_id=user.institution_id,
                permissions=permissions_for(user.role),
            )
            readable: list[tuple[int, Person]] = []
            denied: Person | None = None
            for person in session.scalars(select(Person).order_by(Person.id)):
                facts = patients_service.facts(session, person.id)
                assert facts is not None
                if policy.decide(session, actor, facts, policy.AccessAction.READ).allowed:
                    size = timeline.timeline(session, actor, person.id, limit=1).total
                    readable.append((size, person))
                elif denied is None and policy.may_discover(session, actor, facts):
                    denied = person
            assert readable and denied is not None, "the demo seed has no suitable patients"
            best = max(readable, key=lambda pair: pair[0])[1]
            cache[username] = DemoPatients(
                str(best.id), best.name, best.name_initials, str(denied.id)
            )
            session.rollback()  # the reads above wrote audit rows: not part of the demo
        return cache[username]

    return pick
