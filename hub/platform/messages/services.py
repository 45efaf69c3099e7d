"""The texts of the hub's services: the catalogue's answers and the admin page, and the
query-set audit's rules, which the admin page and the data-usage report both name."""

TEXTS: dict[str, dict[str, str]] = {
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
    # -- the admin page: egress alerts and caps of researchers' servers ------------------
    "admin.egress.title": {
        "ja": "持ち出しの警告と上限（直近 {days} 日）",
        "en": "Egress alerts and caps (last {days} days)",
    },
    "admin.egress.note": {
        "ja": "各サーバーの持ち出し量（ブラウザ等への送信量と表示された対象者の人数、日本時間の1日ごと）が"
        "警告値に達した日と上限に達した日です。上限に達したサーバーは、その日の終わりまで出力と"
        "ダウンロードが止まっています。年間の集計は利用報告書にあります。",
        "en": "Days on which a server's egress (bytes sent to browsers and other clients, and "
        "cohort people shown, per Japan-time day) reached the alert or the cap. At the cap the "
        "server's outputs and downloads are withheld for the rest of that day. The year's "
        "ledger is in the data-usage report.",
    },
    "admin.egress.none": {
        "ja": "この期間に警告・上限に達したサーバーはありません。",
        "en": "No server reached the alert or the cap in this period.",
    },
    "admin.egress.level.alert": {"ja": "警告", "en": "alert"},
    "admin.egress.level.cap": {"ja": "上限（出力停止）", "en": "cap: outputs withheld"},
    "admin.egress.reached.bytes": {"ja": "送信量", "en": "bytes"},
    "admin.egress.reached.people": {"ja": "人数", "en": "people"},
    # -- the admin page: the sites' query-set audit ----------------------------------------
    "admin.query_audit.title": {
        "ja": "照会集合監査による拒否（直近 {days} 日）",
        "en": "Query-set audit refusals (last {days} days)",
    },
    "admin.query_audit.note": {
        "ja": "各サイトのゲートウェイは、承認ごと・データセットごとにこれまでに回答した照会の対象者の集合を"
        "記録し、以前の回答と組み合わせると特定の個人を割り出せる照会を拒否します。衝突した以前の照会は"
        "時刻とタスクで示します（照会の条件や対象者は示しません）。監査をリセットすると、その承認の以前の"
        "回答は各サイトで保管され、新しい記録が始まります。リセットには理由が必要で、利用報告書に載ります。",
        "en": "Each site's gateway keeps, per approval and dataset, the sets of people its answers "
        "summed over, and refuses a query that, put together with earlier answers, would single "
        "out a person. The earlier queries it collides with are shown by time and task (never "
        "their parameters or people). Resetting the audit archives the approval's earlier "
        "answers at each site and starts a new record; a reset needs a reason and is listed in "
        "the data-usage report.",
    },
    "admin.query_audit.none": {
        "ja": "この期間に照会集合監査が拒否した照会はありません。",
        "en": "The query-set audit refused no query in this period.",
    },
    "admin.query_audit.no_reset": {
        "ja": "この期間のリセットはありません。",
        "en": "No reset in this period.",
    },
    # a person's own audit: the catalogue's counts for someone with no approval of the dataset
    "admin.query_audit.own": {"ja": "本人単位の監査", "en": "the person's own audit"},
    # the rules of the query-set audit (extensions/federation/query_audit.py), for the admin page
    # and the data-usage report
    "query_audit.rule.min_count": {"ja": "対象者が少なすぎる", "en": "too few people"},
    "query_audit.rule.small_difference": {
        "ja": "以前の照会との差が少なすぎる",
        "en": "differs from an earlier query by too few people",
    },
    "query_audit.rule.isolating_combination": {
        "ja": "以前の回答との組み合わせで個人を特定できる",
        "en": "combined with earlier answers, isolates a person",
    },
    "query_audit.rule.isolating_pair": {
        "ja": "以前の回答との組み合わせで二人の値の組が求まる（欠測のある変異では一人の値）",
        "en": "combined with earlier answers, gives two people's values together "
        "(one person's where the other's call is missing)",
    },
    # -- the admin page: the export airlock's review ----------------------------------------
    "review.title": {"ja": "持ち出し申請の審査", "en": "Review queue"},
    "review.note": {
        "ja": "あなたが今審査できる持ち出し申請です（ご自身の申請と、既に判断した申請は含みません）。"
        "承認には、そのサイトのサイト管理者1名と事務局1名の承認が必要です。",
        "en": "The export requests you may review now (never your own, nor one you have "
        "decided on). A request is approved by one site admin of its site and one member of "
        "the secretariat.",
    },
    "review.none": {
        "ja": "審査待ちの持ち出し申請はありません。",
        "en": "No export request awaits your review.",
    },
    "review.not_reviewer": {
        "ja": "持ち出し申請を審査する役割（サイト管理者・事務局）をお持ちではありません。",
        "en": "You hold no role that reviews export requests (site admin, secretariat).",
    },
    "review.request": {"ja": "持ち出し申請 {id}", "en": "Export request {id}"},
    "review.col.state": {"ja": "状態", "en": "State"},
    "review.col.requester": {"ja": "申請者", "en": "Requester"},
    "review.col.site": {"ja": "サイト", "en": "Site"},
    "review.col.purpose": {"ja": "目的", "en": "Purpose"},
    "review.col.files": {"ja": "ファイル", "en": "Files"},
    "review.col.checks": {"ja": "自動チェック", "en": "Checks"},
    "review.col.age": {"ja": "申請からの経過", "en": "Age"},
    "review.col.reviews": {"ja": "これまでの判断", "en": "Decisions so far"},
    "review.checks.ok": {"ja": "すべて合格", "en": "all passed"},
    "review.checks.failed": {
        "ja": "{count} 個のファイルが不合格",
        "en": "{count} file(s) failed",
    },
    "review.checks.error": {
        "ja": "サイトで凍結できませんでした（{error}）",
        "en": "the site could not freeze it ({error})",
    },
    "review.age": {"ja": "{days} 日 {hours} 時間", "en": "{days} d {hours} h"},
    "review.file.truncated": {
        "ja": "最初の {rows} 行だけを表示しています。",
        "en": "Only the first {rows} rows are shown.",
    },
    "review.file.too_large": {
        "ja": "ファイルが大きすぎるため、最初の {size} バイトだけを表示しています。",
        "en": "The file is large; only its first {size} bytes are shown.",
    },
    "review.file.no_preview": {
        "ja": "この種類のファイルは表示できません（{media_type}）。",
        "en": "This kind of file is not shown here ({media_type}).",
    },
    "review.file.unavailable": {
        "ja": "サイトから凍結されたファイルを取得できませんでした。",
        "en": "The frozen file could not be fetched from the site.",
    },
    "review.file.hash_mismatch": {
        "ja": "凍結されたファイルがハッシュ値と一致しません。承認しないでください。",
        "en": "The frozen file no longer matches its hash; do not approve it.",
    },
    "review.file.open": {"ja": "別のタブで開く", "en": "open in another tab"},
    "review.form.title": {"ja": "判断", "en": "Decision"},
    "review.form.approve": {"ja": "承認", "en": "approve"},
    "review.form.changes": {"ja": "修正依頼", "en": "ask for changes"},
    "review.form.reject": {"ja": "却下", "en": "reject"},
    "review.form.reason": {
        "ja": "理由（却下・修正依頼では必須）",
        "en": "Reason (needed to reject or ask for changes)",
    },
    "review.form.override": {
        "ja": "チェック結果を覆す理由（不合格のファイルを承認する場合は必須）",
        "en": "Why the failed checks are overridden (needed to approve a failed file)",
    },
    "review.form.submit": {"ja": "送信", "en": "Send"},
    "review.done": {
        "ja": "持ち出し申請 {id} に判断を記録しました（状態: {state}）。",
        "en": "Your decision on export request {id} is recorded (state: {state}).",
    },
    "review.back": {"ja": "審査待ちの一覧へ", "en": "back to the review queue"},
}
