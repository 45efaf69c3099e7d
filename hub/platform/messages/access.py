"""The texts of the hub's own pages: the login button, why a login or a start is refused
(the platform's access decision), and the demo's banner."""

TEXTS: dict[str, dict[str, str]] = {
    # -- the access decision: why a person may not use the platform now ----------------
    # each ends with whom to ask (`access.contact`) when the platform file names a contact
    "access.contact": {
        "ja": " 問い合わせ先: {contact}",
        "en": " Contact: {contact}",
    },
    "access.suspended": {
        "ja": "プラットフォームの利用は停止されています（{day} から）。事務局が停止を解除するまで、"
        "ログイン、サーバーの起動、サイトへの問い合わせはできません。事務局にご連絡ください。",
        "en": "Your access to the platform is suspended (since {day}). You cannot log in, "
        "start servers or query sites until the secretariat lifts the suspension; "
        "please contact the secretariat.",
    },
    "access.not_started": {
        "ja": "利用承認 {approval} の利用期間は {day} に始まります。その日（日本時間）からログインできます。",
        "en": "Your approval {approval} starts on {day}; you can log in from that day (Japan time).",
    },
    "access.revoked": {
        "ja": "利用承認 {approval} は {day} に事務局により取り消されました。"
        "この承認によるデータの利用はできません。",
        "en": "Your approval {approval} was revoked by the secretariat on {day}. "
        "The data may no longer be used under it.",
    },
    "access.ended": {
        "ja": "利用承認 {approval} の利用期間は {day} に終了しました。承認期間外の利用はできません。"
        "延長または新規申請については事務局にお問い合わせください。",
        "en": "Your approval {approval} ended on {day}. Using the data after the approved "
        "period is not allowed; ask the secretariat about an extension or a new application.",
    },
    "access.no_approval": {
        "ja": "ユーザー {username} には承認された利用申請がありません。承認された申請に記載された"
        "データ取扱者のみが利用できます。",
        "en": "User {username} has no approved application for data use. Only data handlers "
        "named in an approved application may use this platform.",
    },
    # -- starting a server at a site -----------------------------------------------------
    "spawn.no_such_site": {
        "ja": "サイト「{site}」はありません。サーバー名にはサイト名を使います: {known}",
        "en": "There is no site '{site}'. Servers are named after a site: {known}.",
    },
    "spawn.not_at_site": {
        "ja": "サイト {site}（{name_ja}）のデータの利用承認がありません。"
        "他のサイトのデータのみ承認されています。{site}（{name}）のデータセットを申請に加えるよう"
        "事務局にご依頼ください。",
        "en": "You have no approval for data at site {site} ({name}, {name_ja}); your approvals "
        "cover other sites. Ask the secretariat to add a dataset of {site} to your application.",
    },
    # the access decision's text follows, in the same language
    "spawn.at_site": {"ja": "サイト {site}: ", "en": "Site {site}: "},
    "spawn.image_not_offered": {
        "ja": "イメージ「{image}」はサイト {site} では使えません。使えるイメージ: {offered}",
        "en": "The image '{image}' is not offered at site {site}; offered: {offered}.",
    },
    # -- logging in ------------------------------------------------------------------------
    "login.service": {"ja": "共通ログイン", "en": "the platform's single sign-on"},
    # -- the demo's banner -------------------------------------------------------------------
    "demo.accounts": {"ja": "デモ専用", "en": "DEMO ONLY passwords"},
}
