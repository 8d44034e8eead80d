"""The order and prescription pages without a browser: what they show, the form checks
beside their fields, permissions (403 page), CSRF, and that a refused form stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.results.models import RecognitionDecision
from medalliance.domains.tcm.models import Prescription, PrescriptionStatus
from medalliance.kernel.roles import Role
from tests.web.clinical_helpers import (
    GLUCOSE,
    World,
    count,
    csrf,
    make_world,
    new_user,
    web_client,
)

EN = {"ma_lang": "en"}


@pytest.fixture
def world(session: Session) -> World:
    return make_world(session)


def _decide(world: World, **fields: Any) -> dict[str, Any]:
    return {"items": GLUCOSE, "result_id": str(world.glucose.id), **fields}


def test_the_order_page_shows_the_recognisable_result_and_stores_a_reuse(
    app: FastAPI, session: Session, world: World
) -> None:
    with web_client(app, world.clinician) as client:
        client.cookies.update(EN)
        page = client.get(f"/patients/{world.person.id}/orders", params={"items": GLUCOSE})
        assert page.status_code == 200, page.text
        assert "Reuse this result" in page.text
        assert "5.4" in page.text and "mmol/L" in page.text
        assert world.home.code in page.text
        stored = client.post(
            f"/patients/{world.person.id}/orders/decisions",
            data=_decide(world, decision="reuse", csrf_token=csrf(client)),
            follow_redirects=False,
        )
        assert stored.status_code == 303, stored.text
    [decision] = session.scalars(select(RecognitionDecision)).all()
    assert decision.decision == "reuse" and decision.result_id == world.glucose.id
    assert decision.person_id == world.person.id


@pytest.mark.parametrize(
    ("fields", "field_message"),
    [
        ({"decision": "repeat"}, "needs a reason (R1–R10)"),
        ({"decision": "repeat", "reason_codes": "R6"}, "Reason R6 needs a short description."),
        ({"decision": "reuse", "reason_codes": "R2"}, "takes no repeat reason"),
        ({"decision": "maybe"}, "reuse the result or to repeat"),
    ],
)
def test_a_refused_decision_shows_the_error_beside_the_field_and_stores_nothing(
    app: FastAPI, session: Session, world: World, fields: dict[str, str], field_message: str
) -> None:
    with web_client(app, world.clinician) as client:
        client.cookies.update(EN)
        answer = client.post(
            f"/patients/{world.person.id}/orders/decisions",
            data=_decide(world, csrf_token=csrf(client), **fields),
        )
    assert answer.status_code == 422
    assert field_message in answer.text
    assert 'class="field-error"' in answer.text
    assert "Traceback" not in answer.text
    assert count(session, RecognitionDecision) == 0


def test_the_error_is_in_chinese_by_default(app: FastAPI, session: Session, world: World) -> None:
    with web_client(app, world.clinician) as client:
        answer = client.post(
            f"/patients/{world.person.id}/orders/decisions",
            data=_decide(world, decision="repeat", reason_codes="R6", csrf_token=csrf(client)),
        )
    assert answer.status_code == 422
    assert "原因 R6 需要填写简要说明。" in answer.text
    assert count(session, RecognitionDecision) == 0


def test_a_repeat_with_reason_is_stored(app: FastAPI, session: Session, world: World) -> None:
    with web_client(app, world.clinician) as client:
        answer = client.post(
            f"/patients/{world.person.id}/orders/decisions",
            data=_decide(
                world,
                decision="repeat",
                reason_codes="R6",
                free_text="需要动态观察",
                csrf_token=csrf(client),
            ),
            follow_redirects=False,
        )
    assert answer.status_code == 303, answer.text
    [decision] = session.scalars(select(RecognitionDecision)).all()
    assert decision.decision == "repeat"
    assert decision.reason_codes == ["R6"] and decision.free_text == "需要动态观察"


def test_a_decision_without_the_csrf_token_is_refused(
    app: FastAPI, session: Session, world: World
) -> None:
    with web_client(app, world.clinician) as client:
        answer = client.post(
            f"/patients/{world.person.id}/orders/decisions", data=_decide(world, decision="reuse")
        )
    assert answer.status_code == 403
    assert count(session, RecognitionDecision) == 0


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.AUDITOR, Role.INSTITUTION_ADMIN])
def test_roles_without_patient_access_get_the_403_page(
    app: FastAPI, session: Session, world: World, role: Role
) -> None:
    user = new_user(role, world.home)
    with web_client(app, user) as client:
        page = client.get(f"/patients/{world.person.id}/orders", params={"items": GLUCOSE})
        assert page.status_code == 403
        posted = client.post(
            f"/patients/{world.person.id}/orders/decisions",
            data=_decide(world, decision="reuse", csrf_token=csrf(client)),
        )
        assert posted.status_code == 403
        rx = client.get(f"/encounters/{world.encounter.id}/prescribe")
        assert rx.status_code == 403
    assert "Traceback" not in page.text
    assert count(session, RecognitionDecision) == 0


# --- prescribing ----------------------------------------------------------------------


def _rx(client: Any, **fields: str) -> dict[str, str]:
    body = {
        "herb-0": "甘草",
        "dose-0": "6",
        "herb-1": "甘遂",
        "dose-1": "1",
        "dose_count": "7",
        "herbal_form": "decoction",
        "csrf_token": csrf(client),
    }
    body.update(fields)
    return body


def test_the_editor_finds_herbs_by_initials(app: FastAPI, world: World) -> None:
    with web_client(app, world.clinician) as client:
        page = client.get(f"/encounters/{world.encounter.id}/prescribe")
        assert page.status_code == 200, page.text
        hits = client.get("/prescribe/herbs", params={"q": "dg"})
    assert 'data-herb="当归"' in hits.text


def test_the_live_check_shows_the_incompatible_pair_with_its_source(
    app: FastAPI, world: World
) -> None:
    with web_client(app, world.clinician) as client:
        client.cookies.update(EN)
        checked = client.post(
            f"/encounters/{world.encounter.id}/prescribe/check",
            data=_rx(client, **{"dose-1": ""}),  # a dose still missing: pairs are checked
            headers={"HX-Request": "true", "X-CSRF-Token": csrf(client)},
        )
    assert checked.status_code == 200, checked.text
    assert 'data-rule="eighteen_incompatible"' in checked.text
    assert 'data-severity="block"' in checked.text
    assert "ChP2020" in checked.text  # the finding's source


def test_signing_over_a_blocking_finding_needs_an_override_reason(
    app: FastAPI, session: Session, world: World
) -> None:
    with web_client(app, world.clinician) as client:
        client.cookies.update(EN)
        refused = client.post(
            f"/encounters/{world.encounter.id}/prescribe", data=_rx(client, action="sign")
        )
        assert refused.status_code == 422
        assert "sign only with an override reason" in refused.text
        assert count(session, Prescription) == 0  # not even the draft
        signed = client.post(
            f"/encounters/{world.encounter.id}/prescribe",
            data=_rx(client, action="sign", override_reason="经会诊讨论，获益大于风险"),
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        view = client.get(signed.headers["location"])
    [prescription] = session.scalars(select(Prescription)).all()
    assert prescription.status is PrescriptionStatus.SIGNED
    assert prescription.override_reason == "经会诊讨论，获益大于风险"
    assert "eighteen_incompatible" in {f["rule"] for f in prescription.findings}
    assert view.status_code == 200 and "经会诊讨论" in view.text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"dose-1": "abc"}, "dose-1", "daily dose in grams"),
        ({"dose-1": "-3"}, "dose-1", "daily dose in grams"),
        ({"herb-1": "当规"}, "herb-1", "Did you mean"),
        ({"dose_count": "0"}, "dose_count", "number of doses"),
        ({"action": "sign", "override_reason": "ok"}, "override_reason", "at least 5"),
    ],
)
def test_bad_prescription_input_is_shown_beside_the_field_and_nothing_is_stored(
    app: FastAPI, session: Session, world: World, fields: dict[str, str], field: str, message: str
) -> None:
    with web_client(app, world.clinician) as client:
        client.cookies.update(EN)
        answer = client.post(
            f"/encounters/{world.encounter.id}/prescribe",
            data=_rx(client, **{"action": "save", **fields}),
        )
    assert answer.status_code == 422
    assert message in answer.text
    assert f'name="{field}"' in answer.text
    assert count(session, Prescription) == 0


def test_a_pharmacist_may_not_prescribe(app: FastAPI, session: Session, world: World) -> None:
    pharmacist = new_user(Role.PHARMACIST, world.home)
    with web_client(app, pharmacist) as client:
        answer = client.post(
            f"/encounters/{world.encounter.id}/prescribe", data=_rx(client, action="save")
        )
    assert answer.status_code == 403
    assert count(session, Prescription) == 0


def test_a_prescription_without_csrf_is_refused(
    app: FastAPI, session: Session, world: World
) -> None:
    with web_client(app, world.clinician) as client:
        body = _rx(client, action="save")
        body.pop("csrf_token")
        answer = client.post(f"/encounters/{world.encounter.id}/prescribe", data=body)
    assert answer.status_code == 403
    assert count(session, Prescription) == 0


def test_suggestions_come_from_the_encounters_symptoms(app: FastAPI, world: World) -> None:
    with web_client(app, world.clinician) as client:
        client.cookies.update(EN)
        answer = client.get(
            f"/encounters/{world.encounter.id}/prescribe/suggest",
            headers={"HX-Request": "true"},
        )
    assert answer.status_code == 200, answer.text
    assert "From the encounter's symptoms" in answer.text
    assert "咳嗽" in answer.text
    assert answer.text.count('class="herb-pick"') >= 1


def test_a_formula_with_changes_is_stored_as_its_removals_changes_and_additions(
    app: FastAPI, session: Session, world: World
) -> None:
    with web_client(app, world.clinician) as client:
        editor = client.get(f"/encounters/{world.encounter.id}/prescribe?formula=四君子汤")
        assert editor.status_code == 200
        assert 'name="formula" value="F041"' in editor.text
        assert (
            'name="herb-3" value="甘草"' in editor.text and 'name="dose-3" value="6"' in editor.text
        )
        saved = client.post(
            f"/encounters/{world.encounter.id}/prescribe",
            data={
                "formula": "F041",
                "herb-0": "人参",
                "dose-0": "9",
                "herb-1": "白术",
                "dose-1": "12",  # changed
                "herb-2": "茯苓",
                "dose-2": "9",
                "herb-3": "",  # 甘草 removed
                "dose-3": "",
                "herb-4": "陈皮",  # added
                "dose-4": "6",
                "dose_count": "7",
                "herbal_form": "granules",
                "action": "save",
                "csrf_token": csrf(client),
            },
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        draft = client.get(saved.headers["location"])  # a draft opens in the editor
        assert f'action="{saved.headers["location"]}"' in draft.text
        assert 'name="herb-3" value="陈皮"' in draft.text
    [prescription] = session.scalars(select(Prescription)).all()
    assert prescription.status is PrescriptionStatus.DRAFT
    assert prescription.formula_id == "F041"
    lines = {h.name: (h.dose_g, h.origin) for h in prescription.herbs}
    assert lines == {
        "人参": (9.0, "formula"),
        "白术": (12.0, "changed"),
        "茯苓": (9.0, "formula"),
        "陈皮": (6.0, "added"),
    }
