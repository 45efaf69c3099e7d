"""The texts of the export airlock: why a request, a review, a withdrawal or a download is
refused (hub.platform.airlock, hub.services.export), in the words the requester or the
reviewer reads."""

TEXTS: dict[str, dict[str, str]] = {
    # -- who is asking ---------------------------------------------------------------
    "export.login": {
        "ja": "Authorization: token <ご自身のトークン> を付けて送信してください。",
        "en": "Send Authorization: token <your own token>.",
    },
    "export.not_found": {
        "ja": "持ち出し申請 {id} は存在しないか、あなたが見ることのできる申請ではありません。",
        "en": "There is no export request {id} that you may see.",
    },
    "export.no_file": {
        "ja": "持ち出し申請 {id} にファイル {name} はありません。",
        "en": "Export request {id} holds no file {name}.",
    },
    # -- a new request ---------------------------------------------------------------
    "export.bad_body": {
        "ja": "リクエストの本文が正しくありません: {why}",
        "en": "The request's body is not right: {why}",
    },
    "export.unknown_site": {
        "ja": "サイト {site} はこのプラットフォームにありません。",
        "en": "There is no site {site} on this platform.",
    },
    "export.no_approval": {
        "ja": "サイト {site} で現在有効な承認がないため、持ち出し申請はできません。",
        "en": "You hold no approval active now at site {site}, so you may not request an export "
        "there.",
    },
    "export.purpose_needed": {
        "ja": "持ち出しの目的（論文、発表など）を書いてください。",
        "en": "Write what the files are for (a paper, a talk, ...).",
    },
    "export.no_paths": {
        "ja": "持ち出すファイルを1つ以上指定してください。",
        "en": "Name at least one file to export.",
    },
    "export.too_many_files": {
        "ja": "1回の申請で持ち出せるファイルは {max} 個までです（{count} 個指定されています）。",
        "en": "A request holds at most {max} files; this one names {count}.",
    },
    "export.path_empty": {
        "ja": "{index} 番目のパスが空です。",
        "en": "Path number {index} is empty.",
    },
    "export.path_absolute": {
        "ja": "{path}: ホームディレクトリからの相対パスで指定してください。",
        "en": "{path}: give the path relative to your home folder.",
    },
    "export.path_parent": {
        "ja": "{path}: '..' を含むパスは指定できません。",
        "en": "{path}: a path may not contain '..'.",
    },
    "export.path_twice": {
        "ja": "{path}: 同じファイルが2回指定されています。",
        "en": "{path}: the same file is named twice.",
    },
    # -- reviews -----------------------------------------------------------------------
    "export.bad_decision": {
        "ja": "判断は approve（承認）、reject（却下）、changes（修正依頼）のいずれかです。",
        "en": "A decision is one of approve, reject or changes.",
    },
    "export.reason_needed": {
        "ja": "却下または修正依頼には理由が必要です。",
        "en": "A rejection or a request for changes needs a reason.",
    },
    "export.own_request": {
        "ja": "ご自身の持ち出し申請は審査できません。",
        "en": "You may not review your own export request.",
    },
    "export.not_reviewer": {
        "ja": "サイト {site} の持ち出し申請を審査する役割（{roles}）をお持ちではありません。",
        "en": "You hold none of the roles that review export requests of site {site} ({roles}).",
    },
    "export.already_reviewed": {
        "ja": "持ち出し申請 {id} については既に判断済みです（1人1回）。",
        "en": "You have already given your decision on export request {id} (one per person).",
    },
    "export.role_done": {
        "ja": "持ち出し申請 {id} の {role} による承認は既に済んでいます。",
        "en": "The {role} approval of export request {id} has been given already.",
    },
    "export.not_checked": {
        "ja": "持ち出し申請 {id} はサイトで凍結・自動チェック中です。終わってから審査してください。",
        "en": "Export request {id} is still being frozen and checked at its site; review it "
        "when that is done.",
    },
    "export.awaiting_changes": {
        "ja": "持ち出し申請 {id} は修正依頼中です。申請者の対応を待ってください。",
        "en": "Export request {id} awaits the requester's changes.",
    },
    "export.not_frozen": {
        "ja": "持ち出し申請 {id} はサイトで凍結できなかったため承認できません（{error}）。",
        "en": "Export request {id} could not be frozen at its site and cannot be approved "
        "({error}).",
    },
    "export.override_needed": {
        "ja": "自動チェックに通らなかったファイルがあります（{files}）。承認するには、"
        "チェック結果を覆す理由（override）を書いてください。",
        "en": "Automatic checks failed for {files}; to approve, write why you override them "
        "(override).",
    },
    "export.closed": {
        "ja": "持ち出し申請 {id} は「{state}」で、既に終了しています。",
        "en": "Export request {id} is {state}; it is no longer open.",
    },
    "export.frozen": {
        "ja": "持ち出し申請 {id} の申請者は利用停止中のため、申請は停止解除まで凍結されています。",
        "en": "The requester of export request {id} is suspended; the request is frozen until "
        "they are reinstated.",
    },
    # -- the requester's own acts ----------------------------------------------------------
    "export.not_requester": {
        "ja": "持ち出し申請 {id} の申請者だけができる操作です。",
        "en": "Only the requester of export request {id} may do this.",
    },
    "export.not_approved": {
        "ja": "持ち出し申請 {id} は「{state}」です。承認された申請のファイルだけを受け取れます。",
        "en": "Export request {id} is {state}; only an approved request's files are released.",
    },
    "export.release_expired": {
        "ja": "持ち出し申請 {id} のファイルの受け取り期限（{until}、日本時間）を過ぎました。",
        "en": "The files of export request {id} could be downloaded until {until} (Japan "
        "time); that time has passed.",
    },
    "export.site_unavailable": {
        "ja": "サイト {site} でファイルを凍結・取得できませんでした。しばらくしてから"
        "やり直してください。",
        "en": "The files could not be frozen or fetched at site {site}; try again later.",
    },
    # -- the requester's page on the admin service (hub.services.admin.releases) ----------
    "export.mine.title": {"ja": "あなたの持ち出し申請", "en": "Your export requests"},
    "export.mine.note": {
        "ja": "承認された申請のファイルは、承認から {days} 日間、ここからダウンロードできます"
        "（コンテナの外へ）。受け取れるのは申請時にサイトで凍結されたファイルそのもので、"
        "SHA-256 ハッシュ値で確かめられます。ダウンロードはすべて記録されます。",
        "en": "The files of an approved request can be downloaded here (outside your server) "
        "for {days} days after the approval. They are the very files frozen at the site when "
        "you asked, which their SHA-256 hashes confirm. Every download is recorded.",
    },
    "export.mine.none": {
        "ja": "持ち出し申請はまだありません。申請はご自身のサーバーの中から行います。",
        "en": "You have no export requests yet. You make one from inside your server.",
    },
    "export.mine.request": {"ja": "申請 {id}", "en": "Request {id}"},
    "export.mine.col.created": {"ja": "申請日時", "en": "Requested"},
    "export.mine.col.size": {"ja": "サイズ", "en": "Size"},
    "export.mine.col.sha256": {"ja": "SHA-256 ハッシュ値", "en": "SHA-256"},
    "export.mine.col.decision": {"ja": "判断", "en": "Decision"},
    "export.mine.col.role": {"ja": "審査者の役割", "en": "Reviewer's role"},
    "export.mine.col.reason": {"ja": "理由", "en": "Reason"},
    "export.mine.col.time": {"ja": "日時", "en": "Time"},
    "export.mine.not_frozen": {
        "ja": "サイトで凍結・自動チェック中です。",
        "en": "Being frozen and checked at the site.",
    },
    "export.mine.until": {
        "ja": "{until}（日本時間）までダウンロードできます。",
        "en": "Download until {until} (Japan time).",
    },
    "export.mine.over": {
        "ja": "ダウンロード期限（{until}、日本時間）を過ぎました。ファイルはもう受け取れません。",
        "en": "The download window ended at {until} (Japan time); the files can no longer be "
        "downloaded.",
    },
    "export.mine.released": {
        "ja": "{at}（日本時間）に初めてダウンロードされました。",
        "en": "First downloaded at {at} (Japan time).",
    },
    "export.mine.download": {"ja": "ダウンロード", "en": "download"},
    "export.mine.withdraw": {"ja": "この申請を取り下げる", "en": "Withdraw this request"},
    "export.mine.withdrawn": {
        "ja": "持ち出し申請 {id} を取り下げました。",
        "en": "Export request {id} is withdrawn.",
    },
    # a request's states (extensions.contracts.export.STATES) and its reviewers' roles
    "export.state.submitted": {"ja": "申請済み（凍結中）", "en": "submitted (being frozen)"},
    "export.state.checked": {"ja": "自動チェック済み・審査待ち", "en": "checked, awaiting review"},
    "export.state.under-review": {"ja": "審査中", "en": "under review"},
    "export.state.changes-requested": {"ja": "修正依頼あり", "en": "changes requested"},
    "export.state.approved": {"ja": "承認済み", "en": "approved"},
    "export.state.rejected": {"ja": "却下", "en": "rejected"},
    "export.state.released": {"ja": "受け取り済み", "en": "released"},
    "export.state.withdrawn": {"ja": "取り下げ済み", "en": "withdrawn"},
    "export.role.site-admin": {"ja": "サイト管理者", "en": "site admin"},
    "export.role.secretariat": {"ja": "事務局", "en": "secretariat"},
}
