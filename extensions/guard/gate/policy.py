"""What the gate lets out, as pure logic: a verdict of the recogniser in, a decision out.

- A **download** (any HTTP response that carries content) naming any person of
  the cohort, or holding raw records, a genotype matrix or per-person rows, is
  refused.
- An **output** (a kernel message, a terminal chunk, a widget's state, a
  notebook's stored output shown in JupyterLab) is withheld when it holds raw
  records or a genotype matrix, or shows more than `max_people_per_output`
  people (default 10: pandas shows 10 rows of a long frame, `head()` shows 5).
  The rest of the message stays as it was; the content is replaced by a notice
  in Japanese and English.
- At the daily cap of the egress meter, content is withheld whatever it is.
"""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Iterator
from dataclasses import dataclass

# kinds that are individual-level whatever their size; the rest are judged by the people counted
RECORD_KINDS_PER_PERSON = frozenset({"people-table", "clinical-rows"})

# kernel message types that are outputs of a cell (iopub)
OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "update_display_data", "execute_result", "error"}
)
# messages whose content is control only: status, echo of the code the person typed,
# heartbeats; they are metered but carry nothing from the data
CONTROL_TYPES = frozenset(
    {
        "status",
        "execute_input",
        "execute_reply",
        "shutdown_reply",
        "interrupt_reply",
        "kernel_info_reply",
        "is_complete_reply",
        "clear_output",
        "comm_close",
    }
)
# content keys that are structure, never data; kept as they are when a message is withheld
STRUCTURE_KEYS = frozenset(
    {
        "status",
        "execution_count",
        "name",
        "ename",
        "comm_id",
        "target_name",
        "target_module",
        "cursor_start",
        "cursor_end",
        "found",
        "transient",
        "wait",
        "restart",
        "password",
        "method",
        "event",
        "seq",
        "type",
        "command",
        "success",
    }
)

NOTICE_EN = "Withheld by the egress gate: {what}. Only aggregates may leave the site."
NOTICE_JA = "持ち出し制御により表示しません: {what_ja}。サイトから出せるのは集計結果のみです。"
CAP_EN = (
    "Withheld by the egress gate: today's egress limit for this server is reached; "
    "outputs and downloads resume tomorrow (Japan time). The secretariat has been told."
)
CAP_JA = (
    "持ち出し制御により表示しません: このサーバーの本日の持ち出し上限に達しました。"
    "出力とダウンロードは明日（日本時間）再開します。事務局に通知されています。"
)


@dataclass(frozen=True)
class Decision:
    """What happens to one response or message."""

    withhold: bool
    reason: str = ""  # raw-records, people, per-person-rows, genotype-matrix, egress-cap,
    # airlock (what_en / what_ja: the route refused)
    what_en: str = ""
    what_ja: str = ""

    @property
    def notice_en(self) -> str:
        if self.reason == "airlock":
            from ..airlock import notice_en

            return notice_en(self.what_en)
        return CAP_EN if self.reason == "egress-cap" else NOTICE_EN.format(what=self.what_en)

    @property
    def notice_ja(self) -> str:
        if self.reason == "airlock":
            from ..airlock import notice_ja

            return notice_ja(self.what_ja)
        return CAP_JA if self.reason == "egress-cap" else NOTICE_JA.format(what_ja=self.what_ja)

    @property
    def notice(self) -> str:
        return f"{self.notice_ja}\n{self.notice_en}"


PASS = Decision(False)
CAPPED = Decision(
    True, "egress-cap", "today's egress limit is reached", "本日の持ち出し上限に達しました"
)


def judge_airlock(method: str, route: str, downloads: str) -> Decision:
    """A direct download at a site where files leave only by export request (see
    ..airlock): refused before the server is asked, whatever the file holds."""
    from ..airlock import AIRLOCK_REASON, airlocked

    if downloads != "airlock" or not airlocked(route, method):
        return PASS
    return Decision(True, AIRLOCK_REASON, route, route)


def _describe(verdict) -> tuple[str, str]:
    en = getattr(verdict, "describe_en", None)
    ja = getattr(verdict, "describe_ja", None)
    return (
        en() if callable(en) else str(verdict.kind),
        ja() if callable(ja) else str(verdict.kind),
    )


def judge_download(verdict) -> Decision:
    """A file or any content response: refused when it holds anything individual-level."""
    if verdict.kind is None and not verdict.people:
        return PASS
    en, ja = _describe(verdict)
    if verdict.kind is None or verdict.kind in RECORD_KINDS_PER_PERSON:
        n = len(verdict.people)
        if verdict.kind == "clinical-rows" and not n:
            return Decision(True, "per-person-rows", en, ja)
        return Decision(
            True,
            "people",
            f"{en} ({n} {'person' if n == 1 else 'people'} of the cohort named)",
            f"{ja}（コホートの {n} 人を含む）",
        )
    if verdict.kind == "genotype-matrix":
        return Decision(True, "genotype-matrix", en, ja)
    return Decision(True, "raw-records", en, ja)


def judge_output(verdict, max_people: int) -> Decision:
    """A live output or reply: a few people's rows may be shown, records and matrices never."""
    if verdict.kind is None and len(verdict.people) <= max_people:
        return PASS
    en, ja = _describe(verdict)
    if verdict.kind == "genotype-matrix":
        return Decision(True, "genotype-matrix", en, ja)
    if verdict.kind is not None and verdict.kind not in RECORD_KINDS_PER_PERSON:
        return Decision(True, "raw-records", en, ja)
    n = len(verdict.people)
    rows = int(getattr(verdict, "records", 0) or 0)
    if n > max_people:
        return Decision(
            True,
            "people",
            f"rows of {n} people of the cohort at once (at most {max_people} may be shown)",
            f"コホートの {n} 人分の行（一度に表示できるのは {max_people} 人まで）",
        )
    if verdict.kind == "clinical-rows" and rows > max_people:
        return Decision(
            True,
            "per-person-rows",
            f"{rows} per-person rows at once (at most {max_people} may be shown)",
            f"個人ごとの行 {rows} 行（一度に表示できるのは {max_people} 行まで）",
        )
    return PASS


# -- what of a message is looked at, and how it is replaced ---------------------------


def strings_of(doc, budget: int = 64 * 1024 * 1024) -> Iterator[str]:
    """Every string in a JSON document, dictionary keys included (ids can be keys)."""
    stack = [doc]
    while stack and budget > 0:
        item = stack.pop()
        if isinstance(item, str):
            budget -= len(item)
            yield item
        elif isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str):
                    yield k
                stack.append(v)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def text_of_content(content) -> str:
    return "\n".join(strings_of(content))


def withheld_content(msg_type: str, content: dict, decision: Decision) -> dict:
    """The message content with its data replaced by the notice; structure kept."""
    notice = decision.notice
    if msg_type == "stream":
        return {"name": content.get("name", "stdout"), "text": notice + "\n"}
    if msg_type in ("display_data", "update_display_data", "execute_result"):
        page = (
            '<div class="visiting-gate-notice" style="border-left:4px solid #c0392b;'
            'padding:4px 8px;background:#fdecea">'
            + "<br>".join(html.escape(line, quote=False) for line in notice.splitlines())
            + "</div>"
        )
        out = {"data": {"text/plain": notice, "text/html": page}, "metadata": {}}
        for key in ("execution_count", "transient"):
            if key in content:
                out[key] = content[key]
        return out
    if msg_type == "error":
        return {"ename": content.get("ename", "Error"), "evalue": notice, "traceback": [notice]}
    if msg_type == "inspect_reply":
        return {
            "status": content.get("status", "ok"),
            "found": True,
            "data": {"text/plain": notice},
            "metadata": {},
        }
    if msg_type == "complete_reply":
        return {
            "status": content.get("status", "ok"),
            "matches": [],
            "cursor_start": content.get("cursor_start", 0),
            "cursor_end": content.get("cursor_end", 0),
            "metadata": {},
        }
    if msg_type == "history_reply":
        return {"status": content.get("status", "ok"), "history": []}
    if msg_type == "input_request":
        return {"prompt": notice + "\n", "password": bool(content.get("password"))}
    return _scrub(content, notice)


def _scrub(doc, notice: str):
    """Every data-bearing value of a document replaced by the notice (comms, debug, unknown)."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k in STRUCTURE_KEYS and not isinstance(v, dict | list):
                out[k] = v
            elif isinstance(v, dict):
                out[k] = _scrub(v, notice)
            elif isinstance(v, list):
                out[k] = []
            elif isinstance(v, str):
                out[k] = notice
            else:
                out[k] = v
        return out
    if isinstance(doc, list):
        return []
    if isinstance(doc, str):
        return notice
    return doc


def notice_output(decision: Decision) -> dict:
    """A notebook output cell standing in for a withheld stored output."""
    return {
        "output_type": "display_data",
        "data": {"text/plain": decision.notice},
        "metadata": {"visiting_gate": {"reason": decision.reason}},
    }


def redact_notebook(nb: dict, judge) -> tuple[dict, list[Decision], set]:
    """A notebook as JupyterLab shows it: stored outputs judged one by one like live outputs.

    `judge(text)` returns (decision, verdict) for an output's text. Returns the
    notebook with withheld outputs replaced, the decisions of those, and the
    people shown in what stays.
    """
    out = copy.deepcopy(nb)
    withheld: list[Decision] = []
    people: set = set()
    for cell in out.get("cells") or []:
        outputs = cell.get("outputs")
        if not isinstance(outputs, list):
            continue
        for i, output in enumerate(outputs):
            decision, verdict = judge(text_of_content(output))
            if decision.withhold:
                outputs[i] = notice_output(decision)
                withheld.append(decision)
            else:
                people |= set(verdict.people)
    return out, withheld, people


def dumps(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
