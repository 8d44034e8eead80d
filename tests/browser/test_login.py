"""Log in, land on the role's page, log out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medalliance.kernel.roles import Role
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


def test_clinician_logs_in_lands_on_patient_search_and_logs_out(
    new_page: Callable[..., Any], screenshot: Callable[[Any, str], Any]
) -> None:
    page = new_page()
    page.goto("/patients")
    assert "/login?next=/patients" in page.url  # not logged in: sent to the login page
    screenshot(page, "login")
    log_in(page, "clinician")
    page.wait_for_url("**/patients")
    assert page.locator("h1").inner_text() == "查找患者"
    page.goto("/")
    assert page.locator("#home-search").is_visible()
    assert page.locator("#recent-patients").is_visible()
    page.click("form.logout button")
    page.wait_for_url("**/login")
    assert page.locator(".flash-success").inner_text() == "您已退出登录。"
    page.goto("/")
    assert "/login" in page.url  # the session is gone, server-side


def test_admin_lands_on_administration(logged_in_page: Callable[..., Any]) -> None:
    page = logged_in_page(Role.ALLIANCE_ADMIN)
    assert page.locator("#home-admin").is_visible()
    assert page.locator("#home-search").count() == 0  # administrators read no records
