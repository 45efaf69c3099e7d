"""The report's words, read from the platform's message table (hub/platform/messages):
its keys are `report.<name>`, the counting rules `report.rule.<name>`, the checklist
`report.checklist.<id>` and the download-block reasons `report.block_reason.<reason>`."""

from __future__ import annotations

from hub.platform.messages import LANGS, MESSAGES, message

__all__ = ["CHECKLIST", "LANGS", "block_reason", "checklist_item", "rule", "rule_name", "t"]

_CHECKLIST_KEY = "report.checklist."

#: the self-assessment checklist's ids, in the order the institution answers them
CHECKLIST: tuple[str, ...] = tuple(
    key.removeprefix(_CHECKLIST_KEY) for key in MESSAGES if key.startswith(_CHECKLIST_KEY)
)


def t(key: str, lang: str, **kwargs) -> str:
    """The report's text `key` in `lang`, formatted with kwargs."""
    text = MESSAGES[f"report.{key}"][lang]
    return text.format(**kwargs) if kwargs else text


def rule(key: str, lang: str) -> str:
    """How a figure is counted (docs/report.md names the same rules)."""
    return MESSAGES[f"report.rule.{key}"][lang]


def checklist_item(item: str, lang: str) -> str:
    return MESSAGES[f"{_CHECKLIST_KEY}{item}"][lang]


def block_reason(reason: str, lang: str) -> str:
    """Why a download was blocked, with the guard's reason id; the id alone when unknown."""
    entry = MESSAGES.get(f"report.block_reason.{reason}")
    return f"{entry[lang]} ({reason})" if entry else reason


def rule_name(rule: str | None, lang: str) -> str:
    """A query-set audit rule as a person reads it, with its id; '-' when none was named."""
    if rule is None:
        return "-"
    key = f"query_audit.rule.{rule}"
    if key not in MESSAGES:
        return rule
    return f"{getattr(message(key), lang)} ({rule})"
