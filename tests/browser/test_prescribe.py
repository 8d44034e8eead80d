"""Write a prescription: herbs found by pinyin initials, the 十八反 pair 甘草 + 甘遂
found as one types (blocking, with its source), signing only with an override reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from medalliance.kernel.roles import Role
from tests.browser.clinical_world import patient_with_results
from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser


def _add_herb(page: Any, initials: str, name: str, dose: str) -> None:
    """Type the initials in the finder, pick the herb: it fills the first empty line and
    the cursor moves to its dose."""
    page.fill("#herb-finder", initials)
    page.locator(f'#herb-hits .herb-pick[data-herb="{name}"]').click()
    page.wait_for_function(
        "name => [...document.querySelectorAll('#herb-lines .herb-name')]"
        ".some(input => input.value === name)",
        arg=name,
    )
    page.locator("#herb-lines input.herb-dose:focus").fill(dose)


def test_prescribe_with_a_blocking_finding_and_its_source(
    live_server: LiveServer,
    logged_in_page: Callable[..., Any],
    screenshot: Callable[[Any, str], Any],
) -> None:
    chart = patient_with_results(live_server, "处方", date(1963, 9, 15))
    page = logged_in_page(Role.CLINICIAN)
    page.goto(f"/encounters/{chart.encounter_id}/prescribe")
    # Suggestions from the encounter's symptoms (咳嗽 头痛); the first loads the model.
    page.locator("#suggestions ol.suggestions").wait_for(timeout=60_000)
    _add_herb(page, "gc", "甘草", "6")
    _add_herb(page, "gs", "甘遂", "1")
    finding = page.locator('#findings .finding[data-rule="eighteen_incompatible"]')
    finding.wait_for()
    assert finding.get_attribute("data-severity") == "block"
    assert "ChP2020" in finding.locator(".source").inner_text()  # the source is shown
    assert "甘草" in finding.inner_text() and "甘遂" in finding.inner_text()
    screenshot(page, "prescribe-finding")

    page.click("#sign-button")
    page.wait_for_load_state()
    assert page.locator("#override-error").is_visible()
    assert page.locator('#herb-lines input.herb-name[value="甘遂"]').count() == 1  # kept
    page.fill("#override-reason", "会诊后确认获益大于风险，已告知患者")
    page.click("#sign-button")
    page.wait_for_url("**/prescriptions/*")
    assert page.locator("#rx-status").inner_text() == "已签署"
    assert page.locator("#override-shown").is_visible()
