"""Message catalogues and locale formatting (Babel).

Every ``*.po`` file under ``locales/<locale>/LC_MESSAGES/`` is read and compiled in
memory at start-up and merged into one catalogue per locale, so each part of the UI
keeps its own file (``core.po``, ``clinical.po``, …) and no compiled ``.mo`` is
committed. English is the source language: its catalogue may leave strings empty.
"""

from __future__ import annotations

import contextvars
import io
from collections.abc import Iterable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from babel import Locale, dates, numbers
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from fastapi import Request

LOCALES_DIR = Path(__file__).parent / "locales"
LOCALES: Final = ("zh_CN", "en")
DEFAULT_LOCALE: Final = "zh_CN"
LANGUAGE_NAMES: Final = {"zh_CN": "简体中文", "en": "English"}
COOKIE = "ma_lang"
# The alliance's members are all in China: show times in China Standard Time.
DISPLAY_TZ = ZoneInfo("Asia/Shanghai")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("web_locale", default=DEFAULT_LOCALE)


def po_files(locale: str) -> list[Path]:
    return sorted((LOCALES_DIR / locale / "LC_MESSAGES").glob("*.po"))


def read_catalog(path: Path, locale: str) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, locale=locale, domain=path.stem)


def _compile(catalog: Catalog) -> Translations:
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer, domain="messages")


@cache
def translations(locale: str) -> Translations:
    """All of a locale's .po files merged (later files win on a clash). The first
    compiled file is the base so that the locale's plural rule (Chinese has one form)
    comes from a catalogue, not from an empty default."""
    compiled = [_compile(read_catalog(path, locale)) for path in po_files(locale)]
    if not compiled:
        return Translations()
    merged = compiled[0]
    for other in compiled[1:]:
        merged.merge(other)
    return merged


def load_all() -> None:
    """Compile every catalogue now, so a broken .po fails at start-up, not on a page."""
    for locale in LOCALES:
        translations(locale)


def normalise(value: str | None) -> str | None:
    """Map what a browser or a form sends (zh-CN, zh, en-US …) to a supported locale."""
    if not value:
        return None
    tag = value.strip().replace("-", "_")
    if tag in LOCALES:
        return tag
    lower = tag.lower()
    if lower.startswith("zh"):
        return "zh_CN"
    if lower.startswith("en"):
        return "en"
    return None


def _accept_language(header: str) -> Iterable[str]:
    for part in header.split(","):
        yield part.split(";")[0]


def locale_of(request: Request) -> str:
    """The cookie first (the user's choice), then the browser's languages, then Chinese."""
    chosen = normalise(request.cookies.get(COOKIE))
    if chosen:
        return chosen
    for tag in _accept_language(request.headers.get("accept-language", "")):
        found = normalise(tag)
        if found:
            return found
    return DEFAULT_LOCALE


def activate(locale: str) -> contextvars.Token[str]:
    return _current.set(locale)


def current() -> str:
    return _current.get()


def raw_gettext(message: str) -> str:
    return str(translations(_current.get()).ugettext(message))


def raw_ngettext(singular: str, plural: str, n: int) -> str:
    return str(translations(_current.get()).ungettext(singular, plural, n))


def gettext(message: str, **variables: Any) -> str:
    """Translate into the active locale; ``%(name)s`` placeholders are filled in."""
    text = translations(_current.get()).ugettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    text = translations(_current.get()).ungettext(singular, plural, n)
    return text % {"num": n, **variables}


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark only"
    """Mark a string for extraction; it is translated where it is shown."""
    return message


def format_date(value: date | datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(DISPLAY_TZ).date()
    return dates.format_date(value, format=format, locale=Locale.parse(_current.get()))


def format_datetime(value: datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    return dates.format_datetime(
        value, format=format, tzinfo=DISPLAY_TZ, locale=Locale.parse(_current.get())
    )


def format_number(value: float | int | None) -> str:
    if value is None:
        return ""
    return numbers.format_decimal(value, locale=Locale.parse(_current.get()))
