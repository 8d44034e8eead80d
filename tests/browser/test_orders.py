"""Order tests with the mutual-recognition check inline: reuse one result, repeat
another with a reason (R6 needs its description, shown beside the field)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from medalliance.kernel.roles import Role
from tests.browser.clinical_world import GLUCOSE, POTASSIUM, patient_with_results
from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser


def test_order_with_recognition_reuse_and_repeat_with_reason(
    live_server: LiveServer,
    logged_in_page: Callable[..., Any],
    screenshot: Callable[[Any, str], Any],
) -> None:
    chart = patient_with_results(live_server, "互认", date(1961, 4, 2))
    page = logged_in_page(Role.CLINICIAN)
    page.goto(f"/patients/{chart.person_id}/orders")
    page.check(f'input[name="items"][value="{GLUCOSE}"]')
    page.check(f'input[name="items"][value="{POTASSIUM}"]')
    page.click("#check-recognition")
    glucose = page.locator(f"#item-{GLUCOSE} tr.recognisable").first
    glucose.wait_for()
    assert "5.6" in glucose.inner_text() and "QH-LEAD" in glucose.inner_text()
    assert page.locator(f"#item-{GLUCOSE} .badge-hr").count() >= 1  # the HR mark
    screenshot(page, "orders-recognition")

    glucose.locator(".reuse-form button").click()
    page.wait_for_load_state()
    assert page.locator(".flash-success").inner_text() == "已保存：互认既往结果，不再重复检查。"

    potassium = page.locator(f"#item-{POTASSIUM} tr.recognisable").first
    potassium.locator("details.repeat summary").click()
    potassium.locator('input[name="reason_codes"][value="R6"]').check()
    potassium.locator(".repeat-form button[type=submit]").click()
    page.wait_for_load_state()
    error = page.locator(f"#item-{POTASSIUM} .field-error")
    assert error.inner_text() == "原因 R6 需要填写简要说明。"  # beside the field, in Chinese
    error.scroll_into_view_if_needed()
    screenshot(page, "orders-repeat-reason-error")

    potassium = page.locator(f"#item-{POTASSIUM} tr.recognisable").first
    form = potassium.locator(".repeat-form")
    assert form.locator('input[name="reason_codes"][value="R6"]').is_checked()  # kept
    form.locator('input[name="free_text"]').fill("术前需复核电解质")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator(".flash-success").inner_text() == "已保存：重复检查，并记录了原因。"
