"""The fictional Qinghe (清河) alliance, modelled on the alliances in shared/seeds:
an integrated TCM lead hospital, four district hospitals, eight community health
centres. Every name here is invented."""

from __future__ import annotations

from medalliance.domains.alliance.models import Discipline, InstitutionType, Tier

ALLIANCE = {
    "code": "QINGHE",
    "name_zh": "清河市中西医结合医疗联合体",
    "name_en": "Qinghe Integrated Chinese-Western Medicine Alliance",
    "region": "清河市 Qinghe City",
}

# code, name_zh, name_en, tier, type, district, lead code
INSTITUTIONS: list[tuple[str, str, str, Tier, InstitutionType, str, str | None]] = [
    (
        "QH-LEAD",
        "清河市中西医结合医院",
        "Qinghe Hospital of Integrated Chinese and Western Medicine",
        Tier.LEAD,
        InstitutionType.INTEGRATED,
        "中心区 Central",
        None,
    ),
    (
        "QH-DC",
        "清河市东城区人民医院",
        "Dongcheng District People's Hospital",
        Tier.SECONDARY,
        InstitutionType.GENERAL,
        "东城区 Dongcheng",
        "QH-LEAD",
    ),
    (
        "QH-XC",
        "清河市西城区中医医院",
        "Xicheng District Hospital of TCM",
        Tier.SECONDARY,
        InstitutionType.TCM,
        "西城区 Xicheng",
        "QH-LEAD",
    ),
    (
        "QH-NH",
        "清河市南湖区中西医结合医院",
        "Nanhu District Integrated Medicine Hospital",
        Tier.SECONDARY,
        InstitutionType.INTEGRATED,
        "南湖区 Nanhu",
        "QH-LEAD",
    ),
    (
        "QH-BS",
        "清河市北山区妇幼保健院",
        "Beishan District Maternal and Child Health Hospital",
        Tier.SECONDARY,
        InstitutionType.SPECIALISED,
        "北山区 Beishan",
        "QH-LEAD",
    ),
    (
        "QH-DC-01",
        "东城区和平街道社区卫生服务中心",
        "Heping Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "东城区 Dongcheng",
        "QH-DC",
    ),
    (
        "QH-DC-02",
        "东城区朝阳街道社区卫生服务中心",
        "Chaoyang Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "东城区 Dongcheng",
        "QH-DC",
    ),
    (
        "QH-XC-01",
        "西城区柳荫街道社区卫生服务中心",
        "Liuyin Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "西城区 Xicheng",
        "QH-XC",
    ),
    (
        "QH-XC-02",
        "西城区白塔街道社区卫生服务中心",
        "Baita Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "西城区 Xicheng",
        "QH-XC",
    ),
    (
        "QH-NH-01",
        "南湖区湖滨街道社区卫生服务中心",
        "Hubin Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "南湖区 Nanhu",
        "QH-NH",
    ),
    (
        "QH-NH-02",
        "南湖区莲花街道社区卫生服务中心",
        "Lianhua Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "南湖区 Nanhu",
        "QH-NH",
    ),
    (
        "QH-BS-01",
        "北山区松林街道社区卫生服务中心",
        "Songlin Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "北山区 Beishan",
        "QH-BS",
    ),
    (
        "QH-BS-02",
        "北山区石桥街道社区卫生服务中心",
        "Shiqiao Street Community Health Centre",
        Tier.PRIMARY,
        InstitutionType.COMMUNITY_HEALTH_CENTRE,
        "北山区 Beishan",
        "QH-BS",
    ),
]

# code, name_zh, name_en, discipline, beds in a lead / secondary / primary institution
DEPARTMENTS: list[tuple[str, str, str, Discipline, tuple[int, int, int]]] = [
    ("GIM", "全科医学科", "General Medicine", Discipline.WESTERN, (20, 12, 6)),
    ("TCM-IM", "中医内科", "TCM Internal Medicine", Discipline.TCM, (24, 12, 4)),
    ("CARD", "心血管内科", "Cardiology", Discipline.INTEGRATED, (30, 16, 0)),
    ("ENDO", "内分泌科", "Endocrinology", Discipline.INTEGRATED, (20, 10, 0)),
    ("RESP", "呼吸内科", "Respiratory Medicine", Discipline.WESTERN, (20, 10, 0)),
    ("ACU", "针灸推拿科", "Acupuncture and Tuina", Discipline.TCM, (10, 6, 0)),
    ("LAB", "检验科", "Clinical Laboratory", Discipline.WESTERN, (0, 0, 0)),
    ("RAD", "放射科", "Radiology", Discipline.WESTERN, (0, 0, 0)),
    ("PHARM", "药剂科", "Pharmacy", Discipline.INTEGRATED, (0, 0, 0)),
]

# Department codes per tier: the lead has every department, community centres few.
DEPARTMENTS_BY_TIER = {
    Tier.LEAD: ["GIM", "TCM-IM", "CARD", "ENDO", "RESP", "ACU", "LAB", "RAD", "PHARM"],
    Tier.SECONDARY: ["GIM", "TCM-IM", "CARD", "ENDO", "RESP", "LAB", "RAD", "PHARM"],
    Tier.PRIMARY: ["GIM", "TCM-IM", "PHARM"],
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "霞",
    "平",
    "建华",
    "志强",
    "晓东",
    "玉兰",
    "海燕",
    "国庆",
]
