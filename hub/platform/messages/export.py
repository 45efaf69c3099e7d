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
}
