"""Every text a person reads, in Japanese and English, looked up by key.

A page, an API answer, a command or the data-usage report shows a text by its key, so
the two languages are written once, side by side, and a page and the API that serve the
same answer say the same thing. `{name}` fields are filled by `message(key, name=...)`.

The table is one dict written in parts, by where the texts are shown: `access` (the
hub's own pages: login, the access decision, a server's start), `services` (the
catalogue, the admin page, the query-set audit's rules), `export` (the export airlock's
refusals) and `report` (the data-usage report). A key belongs to one part; writing it in
two stops the import.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.platform.messages import access, export, report, services

LANGS = ("ja", "en")


def _one_table(*parts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for part in parts:
        twice = table.keys() & part.keys()
        if twice:
            raise ValueError(f"messages written twice: {', '.join(sorted(twice))}")
        table.update(part)
    return table


MESSAGES: dict[str, dict[str, str]] = _one_table(
    access.TEXTS, services.TEXTS, export.TEXTS, report.TEXTS
)


@dataclass(frozen=True)
class Message:
    """One text in both languages, its fields filled in."""

    key: str
    ja: str
    en: str

    def __str__(self) -> str:
        """Both languages, Japanese first, as a person in Japan reads them."""
        return f"{self.ja} / {self.en}"

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "ja": self.ja, "en": self.en}


def message(key: str, **fields) -> Message:
    """The text `key` with its `{name}` fields filled; KeyError for an unknown key or a
    field the text needs and was not given."""
    texts = MESSAGES[key]
    return Message(key, *(texts[lang].format(**fields) for lang in LANGS))
