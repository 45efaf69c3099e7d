"""Every text a person reads, in Japanese and English, looked up by key.

A page, an API answer or a command shows a text by its key, so the two languages
are written once, side by side, and a page and the API that serve the same
answer say the same thing. `{name}` fields are filled by `message(key, name=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGS = ("ja", "en")

MESSAGES: dict[str, dict[str, str]] = {
    # -- the catalogue ---------------------------------------------------------------
    "catalogue.not_admitted": {
        "ja": "カタログは、現在有効な承認を持つデータ利用者が利用できます。",
        "en": "The catalogue is open to data handlers with an approval active now; you hold none.",
    },
    # why a site gave the catalogue no count: a short label for a table cell, and the
    # sentence that says what happened ({cause}: the error or the gateway's own words)
    "catalogue.site_down.label": {
        "ja": "応答なし（サイト停止）",
        "en": "no answer: site down",
    },
    "catalogue.site_down": {
        "ja": "サイト {site} のゲートウェイに接続できません（{cause}）。"
        "サイトが停止しているか、ゲートウェイが動いていません。",
        "en": "The gateway of site {site} cannot be reached ({cause}): the site is down "
        "or its gateway is not running.",
    },
    "catalogue.gateway_error.label": {
        "ja": "応答なし（ゲートウェイのエラー）",
        "en": "no answer: gateway error",
    },
    "catalogue.gateway_error": {
        "ja": "サイト {site} のゲートウェイで処理に失敗しました（{cause}）。",
        "en": "The gateway of site {site} failed ({cause}).",
    },
    "catalogue.refused.label": {
        "ja": "応答なし（拒否）",
        "en": "no answer: refused",
    },
    "catalogue.refused": {
        "ja": "サイト {site} のゲートウェイが照会を拒否しました（{cause}）。",
        "en": "The gateway of site {site} refused the query ({cause}).",
    },
    # -- the admin page: the hub's services --------------------------------------------
    "admin.service.up": {"ja": "稼働中", "en": "up"},
    "admin.service.down": {"ja": "応答なし", "en": "down"},
    "admin.services.note": {
        "ja": "再起動の回数はハブの起動以降です。終了したサービスはハブが数秒以内に再起動します。",
        "en": "Restarts since the hub started; the hub restarts a service that exits "
        "within seconds.",
    },
    # the warning at the top of the page while the enforcer does not answer
    "admin.enforcer_down": {
        "ja": "執行サービス（enforcer）が応答していません。利用停止・承認取消は登録され、"
        "ログイン・起動・ゲートウェイは拒否しますが、稼働中のサーバーは enforcer が"
        "復帰するまで停止されません。ハブのログを確認してください。",
        "en": "The enforcer is not answering. Suspensions and revocations are recorded, and "
        "login, spawn and the gateways refuse, but running servers are not stopped until "
        "the enforcer is back. Check the hub's log.",
    },
}


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
