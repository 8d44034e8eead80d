"""Form errors per field in the user's language; the SVG charts."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from medalliance.kernel.errors import InvalidInput
from medalliance.web import charts, i18n
from medalliance.web.forms import FormErrors, validate


class _Form(BaseModel):
    name: str = Field(min_length=2)
    born: date
    count: int = Field(ge=1)


def test_pydantic_errors_become_translated_messages_per_field() -> None:
    token = i18n.activate("zh_CN")
    try:
        errors = FormErrors()
        assert validate(_Form, {"name": "x", "born": "yesterday", "count": "0"}, errors) is None
        assert dict(errors) == {
            "name": "内容太短。",
            "born": "请按 YYYY-MM-DD 格式输入日期。",
            "count": "数值太小。",
        }
        errors = FormErrors()
        assert validate(_Form, {"name": " ", "born": "2020-01-02", "count": "3"}, errors) is None
        assert dict(errors) == {"name": "此项为必填项。"}  # blank counts as missing
        i18n.activate("en")
        errors = FormErrors()
        valid = validate(_Form, {"name": "ok", "born": "2020-01-02", "count": "3"}, errors)
        assert valid == _Form(name="ok", born=date(2020, 1, 2), count=3) and not errors
        errors.add_domain(
            InvalidInput("Type a name, pinyin, initials, ID number or phone.", field="q")
        )
        assert errors["q"] == "Type a name, pinyin, initials, ID number or phone."
    finally:
        i18n._current.reset(token)


def test_domain_errors_are_translated_when_the_catalogue_knows_them() -> None:
    token = i18n.activate("zh_CN")
    try:
        errors = FormErrors()
        errors.add_domain(
            InvalidInput("Type a name, pinyin, initials, ID number or phone.", field="q")
        )
        errors.add_domain(InvalidInput("Some sentence nobody translated.", field=None))
        assert errors["q"] == "请输入姓名、拼音、首字母、身份证号或电话。"
        assert errors[""] == "Some sentence nobody translated."  # shown as it is
    finally:
        i18n._current.reset(token)


def test_sparkline_scales_values_and_marks_abnormal_points() -> None:
    svg = str(
        charts.sparkline(
            [charts.Point(10, False, "a"), charts.Point(20, True, "<b>"), charts.Point(15)],
            width=100,
            height=20,
        )
    )
    # Lowest value at the bottom, highest at the top, padding 3 px.
    assert '<polyline points="3.0,17.0 50.0,3.0 97.0,10.0"/>' in svg
    assert svg.count('class="abnormal"') == 1
    assert "&lt;b&gt;" in svg and "<b>" not in svg  # tooltips are escaped
    assert str(charts.sparkline([charts.Point(1)])) == ""  # one point is no line


def test_trend_chart_labels_its_range() -> None:
    svg = str(charts.trend_chart([charts.Point(5.5), charts.Point(7.25)], label="HbA1c"))
    assert ">7.25</text>" in svg and ">5.5</text>" in svg and 'aria-label="HbA1c"' in svg
