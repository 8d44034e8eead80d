"""The demo's monitoring data: devices by diagnosis, weeks of readings, sourced alerts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.demo.monitoring_data import DAYS, seed_monitoring
from medalliance.domains.monitoring.models import Alert, Device, DeviceGateway, Reading
from medalliance.kernel.clock import utcnow
from tests.factories.alliance import InstitutionFactory
from tests.factories.patients import make_patient


def test_demo_monitoring_seed(session: Session) -> None:
    institutions = {code: InstitutionFactory(code=code) for code in ("QH-LEAD", "QH-DC-01")}
    for institution in institutions.values():
        for n in range(12):
            make_patient(institution, given_name=f"测{n}")
    summary = seed_monitoring(session, institutions, password="demo-password-123")
    assert summary.patients == 24 and summary.devices >= 48
    assert session.scalar(select(func.count()).select_from(DeviceGateway)) == 2
    readings = session.scalar(select(func.count()).select_from(Reading)) or 0
    assert readings == summary.readings and readings > 24 * DAYS * 3
    oldest = session.scalar(select(func.min(Reading.measured_at)))
    assert oldest is not None and oldest < utcnow() - timedelta(days=DAYS - 1)
    alerts = session.scalars(select(Alert)).all()
    assert len(alerts) == summary.alerts
    assert all(a.source for a in alerts)
    # Every device is assigned and every reading belongs to its device's patient.
    assert session.scalar(select(func.count()).select_from(Device)) == summary.devices
    # A second run adds nothing.
    assert seed_monitoring(session, institutions, password="x" * 12).readings == 0
