"""What the query-set audit records and answers: an answered query (`QueryMeta`), the
answer to a check (`Verdict`, naming its rule), and the refusal `record` raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

RULE_MIN_COUNT = "min_count"
RULE_SMALL_DIFFERENCE = "small_difference"
RULE_ISOLATING = "isolating_combination"
RULE_ISOLATING_PAIR = "isolating_pair"
RULES = (RULE_MIN_COUNT, RULE_SMALL_DIFFERENCE, RULE_ISOLATING, RULE_ISOLATING_PAIR)


@dataclass(frozen=True)
class QueryMeta:
    """An answered query as a refusal may name it: when, which task, its id (no people)."""

    time: str
    task: str
    query_id: str = ""

    @classmethod
    def of(cls, time: datetime | str, task: str, query_id: str = "") -> QueryMeta:
        return cls(time.isoformat() if isinstance(time, datetime) else str(time), task, query_id)

    def to_json(self) -> dict:
        return {"time": self.time, "task": self.task, "query_id": self.query_id}

    @classmethod
    def from_json(cls, doc: dict) -> QueryMeta:
        return cls(str(doc["time"]), str(doc["task"]), str(doc.get("query_id", "")))


@dataclass(frozen=True)
class Verdict:
    """The answer to `check`: ok, or the rule that refuses and what it collides with.

    set_index: which of the query's sets the rule refused (in the order given);
    collides_with: the earlier queries involved (the first answer of each
    answered set in the colliding combination or pair), oldest first;
    same_query_sets: other sets of this same query involved.
    Neither names a person or a count of people.
    """

    ok: bool
    rule: str | None = None
    set_index: int | None = None
    collides_with: tuple[QueryMeta, ...] = ()
    same_query_sets: tuple[int, ...] = ()
    min_count: int = 0

    @property
    def message(self) -> str:
        if self.ok:
            return "answered"
        if self.rule == RULE_MIN_COUNT:
            return (
                f"the query sums over fewer than {self.min_count} people "
                f"(rule {RULE_MIN_COUNT}={self.min_count}); refused"
            )
        earlier = _describe(self.collides_with, self.same_query_sets)
        if self.rule == RULE_SMALL_DIFFERENCE:
            return (
                f"the people this query sums over differ from those of {earlier} by fewer "
                f"than {self.min_count} people, so the difference of the two answers would "
                f"describe that handful (rule {RULE_SMALL_DIFFERENCE}={self.min_count}); refused"
            )
        alone = not (self.collides_with or self.same_query_sets)
        if self.rule == RULE_ISOLATING_PAIR:
            if alone:
                return (
                    "this query's answer would be the values of two people together, and with "
                    "one of them missing at a variant, one person's value "
                    f"(rule {RULE_ISOLATING_PAIR}); refused"
                )
            return (
                f"together with {earlier}, this query's answer would let the values of two "
                "people be worked out together by adding and subtracting answers, and with one "
                "of them missing at a variant, one person's value "
                f"(rule {RULE_ISOLATING_PAIR}); refused"
            )
        if alone:
            return (
                f"this query's answer would be one person's value (rule {RULE_ISOLATING}); refused"
            )
        return (
            f"together with {earlier}, this query's answer would let one person's value be "
            f"worked out by adding and subtracting answers (rule {RULE_ISOLATING}); refused"
        )

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "rule": self.rule,
            "set_index": self.set_index,
            "collides_with": [m.to_json() for m in self.collides_with],
            "same_query_sets": list(self.same_query_sets),
            "message": self.message,
        }


def _describe(earlier: tuple[QueryMeta, ...], same: tuple[int, ...]) -> str:
    parts = []
    if earlier:
        last = earlier[-1]
        text = f"the earlier query {last.task} answered at {last.time}"
        if len(earlier) > 1:
            text += f" and {len(earlier) - 1} earlier queries before it"
        parts.append(text)
    if same:
        parts.append("another selection of this same query")
    return " and ".join(parts)


class QuerySetRefused(Exception):
    """`record` found the query unsafe (another answer was recorded since its check)."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict
