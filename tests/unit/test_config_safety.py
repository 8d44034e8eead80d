"""``Settings.check_safe_to_serve``: no serving real data with the published secret."""

from __future__ import annotations

import pytest

from medalliance.app import create_app
from medalliance.config import DEFAULT_SECRET_KEY, Settings
from medalliance.kernel.errors import ConfigurationError

GOOD_SECRET = "a-long-random-secret-for-tests-0123456789"


def settings(*, secret_key: str = GOOD_SECRET, demo_mode: bool = False) -> Settings:
    return Settings(database_url="sqlite:///:memory:", secret_key=secret_key, demo_mode=demo_mode)


def test_the_default_secret_is_refused_outside_demo_mode() -> None:
    with pytest.raises(ConfigurationError, match="MEDALLIANCE_SECRET_KEY"):
        settings(secret_key=DEFAULT_SECRET_KEY).check_safe_to_serve()


def test_the_default_secret_is_accepted_in_demo_mode() -> None:
    settings(secret_key=DEFAULT_SECRET_KEY, demo_mode=True).check_safe_to_serve()


@pytest.mark.parametrize("demo_mode", [False, True])
def test_a_short_secret_is_refused(demo_mode: bool) -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        settings(secret_key="x" * 31, demo_mode=demo_mode).check_safe_to_serve()


def test_a_long_custom_secret_is_accepted() -> None:
    settings(secret_key="x" * 32).check_safe_to_serve()


def test_the_default_secret_is_what_settings_fall_back_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEDALLIANCE_SECRET_KEY", raising=False)
    monkeypatch.delenv("MEDALLIANCE_DEMO_MODE", raising=False)
    with pytest.raises(ConfigurationError):
        Settings().check_safe_to_serve()


def test_create_app_refuses_to_start_with_the_default_secret() -> None:
    with pytest.raises(ConfigurationError, match="Refusing to start"):
        create_app(settings(secret_key=DEFAULT_SECRET_KEY))


def test_create_app_starts_with_a_proper_secret() -> None:
    app = create_app(settings())
    assert app.state.settings.secret_key == GOOD_SECRET
