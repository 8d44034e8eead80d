"""Administration: an account created by the alliance administrator (a field error
first, in the chosen language), and a bed's status changed by a nurse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medalliance.kernel.roles import Role

pytestmark = pytest.mark.browser


def test_admin_creates_an_account(
    logged_in_page: Callable[..., Any], screenshot: Callable[[Any, str], Any]
) -> None:
    page = logged_in_page(Role.ALLIANCE_ADMIN)
    page.goto("/admin/accounts")
    form = page.locator("#new-account")
    form.locator("#f-username").fill("dr.web.test")
    form.locator("#f-display_name").fill("网页测试医生")
    form.locator("#f-password").fill("short")
    form.locator("#f-role").select_option("clinician")
    form.locator("#f-institution_code").fill("QH-LEAD")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator("#e-password").inner_text() == "内容太短。"  # beside the field
    form = page.locator("#new-account")
    form.locator("#f-password").fill("a-long-enough-password")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator(".flash-success").inner_text() == "账号已创建。"
    row = page.locator('tr[data-username="dr.web.test"]')
    assert "网页测试医生" in row.inner_text()
    screenshot(page, "admin-accounts")


def test_nurse_changes_a_bed_status(logged_in_page: Callable[..., Any]) -> None:
    page = logged_in_page(Role.NURSE)
    page.goto("/admin/institutions/QH-LEAD")
    page.locator("table.registry a[href$='/beds']").first.click()
    bed = page.locator(".bed").first
    bed.wait_for()
    code = bed.get_attribute("data-bed")
    current = bed.locator('select[name="status"]').input_value()
    target = "cleaning" if current != "cleaning" else "free"
    bed.locator('select[name="status"]').select_option(target)
    bed.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator(".flash-success").inner_text() == "床位状态已修改。"
    changed = page.locator(f'.bed[data-bed="{code}"] select[name="status"]')
    assert changed.input_value() == target
