"""Find a patient, open the chart, break the glass, switch language, keep a draft over a
session timeout, and the layout at laptop and tablet sizes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from medalliance.access.models import User
from medalliance.kernel.clock import utcnow
from medalliance.web.models import WebSession
from tests.browser.conftest import TABLET, DemoPatients, LiveServer, log_in

pytestmark = pytest.mark.browser

Shot = Callable[[Any, str], Any]


def test_find_a_patient_by_initials_with_live_results(
    logged_in_page: Callable[..., Any],
    demo_patients: Callable[[str], DemoPatients],
    screenshot: Shot,
) -> None:
    patient = demo_patients("clinician")
    page = logged_in_page("clinician")
    page.click("nav.nav a[href='/patients']")
    page.fill("#q", patient.readable_initials)  # no Enter: HTMX searches as one types
    row = page.locator("#results a", has_text=patient.readable_name).first
    row.wait_for()
    assert "q=" in page.url  # the search is in the address (back button, bookmark)
    screenshot(page, "patient-search")
    row.click()
    page.wait_for_url(f"**/patients/{patient.readable_id}")
    assert page.locator("#demographics h1").inner_text().startswith(patient.readable_name)


def test_the_chart_shows_every_section(
    logged_in_page: Callable[..., Any],
    demo_patients: Callable[[str], DemoPatients],
    screenshot: Shot,
) -> None:
    patient = demo_patients("clinician")
    page = logged_in_page("clinician")
    page.goto(f"/patients/{patient.readable_id}")
    # The timeline arrives by HTMX, each entry with its member's badge.
    page.locator("#section .timeline li").first.wait_for()
    assert page.locator("#section .timeline .badge-inst").count() >= 1
    screenshot(page, "chart-timeline")
    expectations = {
        "diagnoses": "table.diagnoses",
        "results": "table.results-table",
        "prescriptions": "article.prescription",
        "constitution": "article.assessment",
        "devices": "table",
    }
    for tab, selector in expectations.items():
        page.click(f"#tab-{tab}")
        page.wait_for_url(f"**tab={tab}")
        page.locator(f"#section {selector}, #section .empty").first.wait_for()
        assert page.locator(f"#tab-{tab}").get_attribute("aria-selected") == "true"
    page.click("#tab-results")
    page.locator("#section table.results-table, #section .empty").first.wait_for()
    if page.locator("#section svg.sparkline").count():
        screenshot(page, "chart-results")
        page.locator("#section td a:has(svg.sparkline)").first.click()
        page.locator("#section svg.trend-chart").wait_for()


def test_break_the_glass_asks_for_a_reason_then_shows_the_banner(
    logged_in_page: Callable[..., Any],
    demo_patients: Callable[[str], DemoPatients],
    screenshot: Shot,
) -> None:
    patient = demo_patients("nurse")
    page = logged_in_page("nurse")
    page.goto(f"/patients/{patient.denied_id}")
    dialog = page.locator("#break-glass-dialog")
    assert dialog.is_visible()
    assert page.locator("#demographics").count() == 0  # nothing of the record shown
    page.fill("#f-reason", "ab")  # too short: the error appears beside the field
    page.locator("#f-reason").evaluate("el => el.removeAttribute('minlength')")
    page.click("#break-glass-form button[type=submit]")
    assert page.locator("#e-reason").inner_text() == "请说明紧急情况：破窗需要至少 4 个字符的理由。"
    screenshot(page, "break-glass-dialog")
    page.fill("#f-reason", "急诊昏迷，无法问诊，需查看既往用药")
    page.click("#break-glass-form button[type=submit]")
    page.wait_for_url(f"**/patients/{patient.denied_id}")
    banner = page.locator("#break-glass-banner")
    assert banner.is_visible()
    assert "急诊昏迷" in banner.inner_text()
    page.locator("#section .timeline li, #section .empty").first.wait_for()
    screenshot(page, "break-glass-banner")
    page.click(".end-break-glass button")
    page.wait_for_url("**/patients")
    page.goto(f"/patients/{patient.denied_id}")
    assert page.locator("#break-glass-dialog").is_visible()  # ended: denied again


def test_switch_language_at_any_time_and_it_sticks(
    logged_in_page: Callable[..., Any],
    demo_patients: Callable[[str], DemoPatients],
    screenshot: Shot,
) -> None:
    patient = demo_patients("clinician")
    page = logged_in_page("clinician")
    page.goto(f"/patients/{patient.readable_id}?tab=results")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#tab-results").inner_text() == "检验检查"
    page.click(".lang-switch button[value=en]")
    page.wait_for_url(f"**/patients/{patient.readable_id}?tab=results")  # same page
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#tab-results").inner_text() == "Results"
    page.locator("#section table.results-table, #section .empty").first.wait_for()
    screenshot(page, "chart-results-en")
    page.goto("/")
    assert page.locator("h1").inner_text().startswith("Welcome")
    page.click(".lang-switch button[value=zh_CN]")
    page.wait_for_url("**/")
    assert page.locator("h1").inner_text().startswith("欢迎")


def test_a_timed_out_session_keeps_what_was_typed(
    logged_in_page: Callable[..., Any],
    demo_patients: Callable[[str], DemoPatients],
    live_server: LiveServer,
    screenshot: Shot,
) -> None:
    patient = demo_patients("pharmacist")
    page = logged_in_page("pharmacist")
    page.goto(f"/patients/{patient.denied_id}")
    typed = "夜间急诊：患者意识不清，需核对既往中药处方"
    page.fill("#f-reason", typed)
    # The session times out while the pharmacist is typing (as if 31 idle minutes passed).
    with live_server.factory() as session:
        user_id = session.scalar(select(User.id).where(User.username == "pharmacist"))
        session.execute(
            update(WebSession)
            .where(WebSession.user_id == user_id)
            .values(last_seen_at=utcnow() - timedelta(minutes=31))
        )
        session.commit()
    page.click("#break-glass-form button[type=submit]")
    page.wait_for_url(re.compile(r"/login\?next=.*&expired=1$"))
    assert page.locator(".flash-warning").is_visible()
    screenshot(page, "session-timeout")
    log_in(page, "pharmacist")
    page.wait_for_url(f"**/patients/{patient.denied_id}")
    assert page.locator("#f-reason").input_value() == typed
    assert page.locator(".draft-restored").is_visible()


def test_lockout_message(new_page: Callable[..., Any], screenshot: Shot) -> None:
    page = new_page()
    for _ in range(5):
        log_in(page, "researcher", "not-the-password")
        page.locator(".form-error").wait_for()
    message = page.locator(".form-error").inner_text()
    assert "该账号因多次登录失败已被锁定" in message
    screenshot(page, "lockout")


@pytest.mark.parametrize(
    "viewport", [{"width": 1366, "height": 768}, TABLET], ids=["laptop", "tablet"]
)
def test_the_chart_fits_laptop_and_tablet(
    logged_in_page: Callable[..., Any],
    demo_patients: Callable[[str], DemoPatients],
    screenshot: Shot,
    viewport: dict[str, int],
) -> None:
    patient = demo_patients("clinician")
    page = logged_in_page("clinician", viewport=viewport)
    page.goto(f"/patients/{patient.readable_id}?tab=diagnoses")
    page.locator("#section table.diagnoses, #section .empty").first.wait_for()
    # Nothing sticks out sideways: the page never scrolls horizontally.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    for name in ("timeline", "results", "prescriptions"):
        assert page.locator(f"#tab-{name}").is_visible()
    if viewport == TABLET:
        screenshot(page, "chart-tablet")
