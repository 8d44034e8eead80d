"""The MPI review queue: a pair side by side with the differing fields highlighted,
linked by a clinician."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medalliance.kernel.roles import Role
from tests.browser.clinical_world import uncertain_match
from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser


def test_review_queue_link(
    live_server: LiveServer,
    logged_in_page: Callable[..., Any],
    screenshot: Callable[[Any, str], Any],
) -> None:
    item = str(uncertain_match(live_server, "欧阳", "娜娜"))
    page = logged_in_page(Role.CLINICIAN)
    page.goto("/review")
    pair = page.locator(f'.review-pair[data-item="{item}"]')
    pair.wait_for()
    assert pair.locator('tr.differs[data-field="birth_date"]').count() == 1
    assert pair.locator('tr.same[data-field="name"]').count() == 1
    assert pair.locator(".comparison-list li").count() >= 5  # each field's comparison
    screenshot(page, "review-queue")
    pair.locator('input[name="note"]').fill("电话核实为同一人")
    pair.locator("button.link-pair").click()
    page.wait_for_load_state()
    assert page.locator(".flash-success").inner_text() == "记录已合并为同一人。"
    assert page.locator(f'.review-pair[data-item="{item}"]').count() == 0
