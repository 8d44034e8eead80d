"""The central monitoring desk: patients by urgency with ECharts charts, acknowledge an
alert with a note; on a laptop and on a tablet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medalliance.kernel.roles import Role
from tests.browser.clinical_world import silent_monitored_patient
from tests.browser.conftest import TABLET, LiveServer

pytestmark = pytest.mark.browser


def test_acknowledge_an_alert_on_the_desk(
    live_server: LiveServer,
    logged_in_page: Callable[..., Any],
    screenshot: Callable[[Any, str], Any],
) -> None:
    _person, alert_id = silent_monitored_patient(live_server, "监测")
    page = logged_in_page(Role.NURSE)
    page.goto("/desk")
    page.locator(".chart canvas").first.wait_for()  # ECharts drew from /static
    row = page.locator(f'[data-alert="{alert_id}"]')
    assert row.locator(".alert-status").inner_text() == "待处理"
    screenshot(page, "desk")
    row.locator('input[name="note"]').fill("已电话随访，设备未开机")
    row.locator("button.ack").click()
    page.wait_for_load_state()
    assert page.locator(".flash-success").inner_text() == "告警已确认。"
    row = page.locator(f'[data-alert="{alert_id}"]')
    assert row.locator(".alert-status").inner_text() == "已确认"
    assert "已电话随访" in row.locator(".alert-note").inner_text()


def test_the_desk_fits_a_tablet(
    logged_in_page: Callable[..., Any], screenshot: Callable[[Any, str], Any]
) -> None:
    page = logged_in_page(Role.NURSE, viewport=TABLET)
    page.goto("/desk")
    page.locator(".chart canvas").first.wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= TABLET["width"]  # no sideways scrolling
    card = page.locator(".desk-card").first.bounding_box()
    assert card is not None and card["width"] > TABLET["width"] * 0.8  # one column
    screenshot(page, "desk-tablet")
