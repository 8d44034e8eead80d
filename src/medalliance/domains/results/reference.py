# ruff: noqa: E501  (a data table reads better one row per line)
"""Reference data of mutual recognition, copied from the project's sourced specification
(``shared/reference/care/WORKFLOWS.md`` §1, 2026 edition) with each row's source.

Sources (WORKFLOWS.md §8):
  S1  laitimes.com English summary of the 2022 Measures (国卫医发〔2022〕6号): the HR mark.
  S4  NHC press briefing (焦雅辉): the six national re-test situations (R1–R6).
  S5  Inner Mongolia implementation plan [regional]: R7–R10.
  S8  2024 Guiding Opinions: every tight alliance recognises all items among its members.
  S9  Renmin Hospital of Wuhan University list (鄂卫通〔2023〕56号) [regional]: windows.
  S14 J Clin Pathol table of minimum retest intervals (UK).

WORKFLOWS.md asks to verify each LOINC code against the LOINC release before shipping;
the LOINC PROPERTY (unit family) of each code is from the LOINC table itself. Items the
specification lists without a verified code (apolipoproteins, iron/TIBC/lithium, TSH,
tumour markers) are left out rather than guessed. No price is given by the reference:
prices are left empty (a site sets them as configuration, with its own source).
Imaging windows: "no source found → configurable", so they are left empty here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from medalliance.domains.results.models import ResultKind

CATALOGUE_SOURCE = "WORKFLOWS.md §1.4"
S9 = "S9: Renmin Hospital of Wuhan Univ., 鄂卫通〔2023〕56号 provincial list [regional]"
S14 = "S14: J Clin Pathol minimum retest intervals (UK)"
IMAGING_CODE = "LOINC code verified in public mapping; window: no source found → configurable"
# The date the seeded list version starts (the Hubei notice is of 2023).
SEED_VALID_FROM = date(2023, 1, 1)


@dataclass(frozen=True, slots=True)
class SeedItem:
    code: str
    name_zh: str
    name_en: str
    kind: ResultKind
    unit_property: str | None
    validity_days: int | None
    validity_source: str | None


_LAB = ResultKind.LAB
_IMG = ResultKind.IMAGING

SEED_ITEMS: tuple[SeedItem, ...] = (
    SeedItem("2345-7", "葡萄糖(质量浓度)", "Glucose [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("14749-6", "葡萄糖(摩尔浓度)", "Glucose [Moles/volume] in Serum or Plasma", _LAB, "SCnc", 30, S9),
    SeedItem("4548-4", "糖化血红蛋白", "Hemoglobin A1c/Hemoglobin.total in Blood", _LAB, "MFr", 60, S9),
    SeedItem("2093-3", "总胆固醇", "Cholesterol [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("2571-8", "甘油三酯", "Triglyceride [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("2085-9", "高密度脂蛋白胆固醇", "HDL Cholesterol [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("13457-7", "低密度脂蛋白胆固醇(计算)", "LDL Cholesterol [Mass/volume] (calculated)", _LAB, "MCnc", 30, S9),
    SeedItem("18262-6", "低密度脂蛋白胆固醇(直接)", "LDL Cholesterol [Mass/volume] (direct assay)", _LAB, "MCnc", 30, S9),
    SeedItem("2885-2", "总蛋白", "Protein [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("1751-7", "白蛋白", "Albumin [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("2276-4", "铁蛋白", "Ferritin [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("2823-3", "钾", "Potassium [Moles/volume] in Serum or Plasma", _LAB, "SCnc", 7, S9),
    SeedItem("2951-2", "钠", "Sodium [Moles/volume] in Serum or Plasma", _LAB, "SCnc", 7, S9),
    SeedItem("2075-0", "氯", "Chloride [Moles/volume] in Serum or Plasma", _LAB, "SCnc", 7, S9),
    SeedItem("17861-6", "钙", "Calcium [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 7, S9),
    SeedItem("19123-9", "镁", "Magnesium [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 7, S9),
    SeedItem("2777-1", "无机磷", "Phosphate [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 7, S9),
    SeedItem("1975-2", "总胆红素", "Bilirubin.total [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("1968-7", "直接胆红素", "Bilirubin.direct [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 30, S9),
    SeedItem("1988-5", "C反应蛋白", "C reactive protein [Mass/volume] in Serum or Plasma", _LAB, "MCnc", 2, S14),
    SeedItem("30745-4", "胸部X线", "XR Chest", _IMG, None, None, IMAGING_CODE),
    SeedItem("29252-4", "胸部CT平扫", "CT Chest WO contrast", _IMG, None, None, IMAGING_CODE),
    SeedItem("24587-8", "头颅MRI平扫+增强", "MR Brain WO and W contrast IV", _IMG, None, None, IMAGING_CODE),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RepeatReason:
    code: str
    text_en: str
    text_zh: str
    source: str
    needs_free_text: bool = False


# WORKFLOWS.md §1.3. R1–R6 national (S4); R7–R10 regional (S5, Inner Mongolia).
# The English text is the reference's; the Chinese is our translation, except R5 and R9,
# which quote the source (§1.3 and §1.2.4).
REPEAT_REASONS: dict[str, RepeatReason] = {
    r.code: r
    for r in (
        RepeatReason("R1", "Condition changed: the prior result no longer fits the clinical "
                     "picture or diagnosis", "病情变化，原结果与临床表现或诊断不符", "S4"),
        RepeatReason("R2", "The item changes fast as the disease evolves",
                     "检查检验项目随病情进展变化快", "S4"),
        RepeatReason("R3", "The item is critical before a major intervention "
                     "(e.g. surgery, transfusion)", "重大医疗措施前的关键检查检验", "S4"),
        RepeatReason("R4", "Emergency or rescue situation", "急诊、急救", "S4"),
        RepeatReason("R5", "Forensic, disability or early-retirement assessment",
                     "司法、伤残、病退鉴定", "S4"),
        RepeatReason("R6", "Other situations that need repeating", "其他需要复查的情形", "S4",
                     needs_free_text=True),
        RepeatReason("R7", "Patient or family asks for further tests", "患者或家属要求进一步检查",
                     "S5 [regional]"),
        RepeatReason("R8", "The issuing lab failed provincial or national EQA",
                     "出具结果的实验室未通过省级或国家室间质评", "S5 [regional]"),
        RepeatReason("R9", "Too long since the test; no reference value left",
                     "检验时间与现就诊时间差距较大，已无参考价值", "S5 [regional]"),
        RepeatReason("R10", "Treating physician considers a repeat necessary",
                     "接诊医师认为有必要复查", "S5 [regional]"),
    )
}  # fmt: skip

# A production imaging-cloud UI limits "其他理由" to 200 characters (WORKFLOWS.md §1.3).
FREE_TEXT_MAX = 200

LEVEL_RULE = (
    "Inside a tight alliance every member recognises every other member's results "
    "(S8: 2024 Guiding Opinions; S11: Jiangsu imaging rule) — no tier restriction applies."
)
