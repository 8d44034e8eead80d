"""The catalogues: every UI string translated into Chinese, no text outside them,
placeholders kept, and the merged catalogue is what the pages use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

from medalliance.web import i18n
from medalliance.web.render import TEMPLATES_DIR

WEB_DIR = Path(i18n.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
TAG = re.compile(r"<[^>]*>|&\w+;|&#\d+;", re.DOTALL)
SHOWN_ATTRIBUTE = re.compile(r"\b(title|placeholder|aria-label|alt|value)=\"([^\"]*)\"")
# Characters a template may show without a translation: punctuation and symbols.
ALLOWED = re.compile(r"^[\s·•…|/()（）:：,，.。*+\-–—×✓✗%#?=&\[\]{}'\"0-9]*$")


def _used_messages() -> dict[str, str]:
    """msgid → where it is used, from the web package's Python and templates."""
    found: dict[str, str] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(WEB_DIR),
        method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
        options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={**DEFAULT_KEYWORDS, "N_": None},
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, filename)
    return found


def test_every_ui_string_has_a_chinese_translation() -> None:
    zh = i18n.translations("zh_CN")
    used = _used_messages()
    assert len(used) > 50
    missing = {m: where for m, where in used.items() if zh.ugettext(m) == m}
    assert not missing, f"no zh_CN translation for: {missing}"


def test_translations_keep_their_placeholders() -> None:
    for path in i18n.po_files("zh_CN"):
        for message in i18n.read_catalog(path, "zh_CN"):
            if not message.id or not message.string:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            wanted = set(PLACEHOLDER.findall(ids[-1]))
            for text in strings:
                if text:
                    assert set(PLACEHOLDER.findall(text)) <= wanted | {"num"}, (path, message.id)
                    assert set(PLACEHOLDER.findall(ids[0])) <= set(PLACEHOLDER.findall(text)) | {
                        "num"
                    }, (path, message.id)


def test_every_catalogue_exists_in_both_languages() -> None:
    zh = {p.name for p in i18n.po_files("zh_CN")}
    en = {p.name for p in i18n.po_files("en")}
    assert "core.po" in zh
    assert zh == en


def _template_names() -> list[str]:
    return sorted(str(p.relative_to(TEMPLATES_DIR)) for p in TEMPLATES_DIR.rglob("*.html"))


def _bare_text(template_source: str) -> list[str]:
    """Text between tags and in user-facing attributes that is not Jinja (``_()`` or data)."""
    source = JINJA.sub(" ", template_source)
    bare = [a.group(2) for a in SHOWN_ATTRIBUTE.finditer(source) if not ALLOWED.match(a.group(2))]
    text = TAG.sub(" ", source)
    return bare + [chunk.strip() for chunk in text.split("\n") if not ALLOWED.match(chunk)]


def test_the_bare_text_check_finds_bare_text() -> None:
    assert _bare_text('<p title="Hint">{{ _("Fine") }} Hello</p>') == ["Hint", "Hello"]
    assert _bare_text('<p class="x" title="{{ _(t) }}">{{ _("Fine") }} · 100%</p>') == []
    assert _bare_text("<h1>出错了</h1>") == ["出错了"]


@pytest.mark.parametrize("name", _template_names())
def test_templates_have_no_text_outside_the_catalogue(name: str) -> None:
    bare = _bare_text((TEMPLATES_DIR / name).read_text(encoding="utf-8"))
    assert not bare, f"{name} shows text outside _(): {bare}"


def test_merged_catalogue_takes_strings_from_every_po_file(tmp_path: Path) -> None:
    """A second .po file beside core.po is picked up without registering it."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    extra = Catalog(locale="zh_CN", domain="extra")
    extra.add("A string only in another catalogue", "只在另一个目录中的字符串")
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    for po in i18n.po_files("zh_CN"):
        (folder / po.name).write_bytes(po.read_bytes())
    with (folder / "extra.po").open("wb") as fh:
        write_po(fh, extra)
    original = i18n.LOCALES_DIR
    i18n.translations.cache_clear()
    try:
        i18n.LOCALES_DIR = tmp_path  # type: ignore[misc]
        merged = i18n.translations("zh_CN")
        assert merged.ugettext("A string only in another catalogue") == "只在另一个目录中的字符串"
        assert merged.ugettext("Log in") == "登录"
    finally:
        i18n.LOCALES_DIR = original  # type: ignore[misc]
        i18n.translations.cache_clear()


def test_locale_formatting_follows_the_language() -> None:
    from datetime import UTC, date, datetime

    token = i18n.activate("zh_CN")
    try:
        assert i18n.format_date(date(2026, 3, 5)) == "2026年3月5日"
        # Stored in UTC, shown in China Standard Time.
        assert "08:30" in i18n.format_datetime(datetime(2026, 3, 5, 0, 30, tzinfo=UTC))
        assert i18n.format_number(12345.5) == "12,345.5"
        i18n.activate("en")
        assert i18n.format_date(date(2026, 3, 5)) == "Mar 5, 2026"
        assert i18n.gettext("Log in") == "Log in"
    finally:
        i18n._current.reset(token)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("en-US,en;q=0.9", "en"), ("zh-TW,zh;q=0.8", "zh_CN"), ("fr-FR", "zh_CN"), ("", "zh_CN")],
)
def test_browser_language_is_the_default_until_the_user_chooses(header: str, expected: str) -> None:
    from starlette.requests import Request

    request = Request({"type": "http", "headers": [(b"accept-language", header.encode())]})
    assert i18n.locale_of(request) == expected
