"""Registry factories."""

from __future__ import annotations

import factory

from medalliance.domains.alliance.models import (
    Alliance,
    Bed,
    BedStatus,
    Department,
    Discipline,
    Institution,
    InstitutionType,
    Practitioner,
    PractitionerTitle,
    SharingDefault,
    Tier,
)
from tests.factories.base import BaseFactory


class AllianceFactory(BaseFactory):
    class Meta:
        model = Alliance

    code = factory.Sequence(lambda n: f"ALL{n:04d}")
    name_zh = factory.Sequence(lambda n: f"测试医联体{n}")
    name_en = factory.Sequence(lambda n: f"Test Alliance {n}")
    region = "测试市"
    sharing_default = SharingDefault.OPT_OUT


class InstitutionFactory(BaseFactory):
    class Meta:
        model = Institution

    alliance = factory.SubFactory(AllianceFactory)
    alliance_id = factory.SelfAttribute("alliance.id")
    code = factory.Sequence(lambda n: f"INST{n:04d}")
    name_zh = factory.Sequence(lambda n: f"测试医院{n}")
    name_en = factory.Sequence(lambda n: f"Test Hospital {n}")
    tier = Tier.SECONDARY
    type = InstitutionType.INTEGRATED
    district = "测试区"
    active = True

    class Params:
        pass

    @classmethod
    def _adjust_kwargs(cls, **kwargs: object) -> dict[str, object]:
        kwargs.pop("alliance", None)
        return dict(kwargs)


class DepartmentFactory(BaseFactory):
    class Meta:
        model = Department

    institution = factory.SubFactory(InstitutionFactory)
    institution_id = factory.SelfAttribute("institution.id")
    code = factory.Sequence(lambda n: f"D{n:04d}")
    name_zh = "中医内科"
    name_en = "TCM Internal Medicine"
    discipline = Discipline.TCM
    active = True

    @classmethod
    def _adjust_kwargs(cls, **kwargs: object) -> dict[str, object]:
        kwargs.pop("institution", None)
        return dict(kwargs)


class PractitionerFactory(BaseFactory):
    class Meta:
        model = Practitioner

    institution = factory.SubFactory(InstitutionFactory)
    institution_id = factory.SelfAttribute("institution.id")
    department_id = None
    name = factory.Sequence(lambda n: f"医生{n}")
    title = PractitionerTitle.ATTENDING_PHYSICIAN
    discipline = Discipline.INTEGRATED
    specialty = "Cardiology"
    licence_number = factory.Sequence(lambda n: f"110300{n:09d}")
    active = True

    @classmethod
    def _adjust_kwargs(cls, **kwargs: object) -> dict[str, object]:
        kwargs.pop("institution", None)
        return dict(kwargs)


class BedFactory(BaseFactory):
    class Meta:
        model = Bed

    department = factory.SubFactory(DepartmentFactory)
    department_id = factory.SelfAttribute("department.id")
    code = factory.Sequence(lambda n: f"B{n:03d}")
    status = BedStatus.FREE
    version = 1

    @classmethod
    def _adjust_kwargs(cls, **kwargs: object) -> dict[str, object]:
        kwargs.pop("department", None)
        return dict(kwargs)
