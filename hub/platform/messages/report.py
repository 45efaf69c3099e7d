"""The data-usage report's texts (hub/report): headings, labels, notes, the rules by which
its figures are counted, the self-assessment checklist and the reasons a download was
blocked. Keys start with `report.`; `report.rule.*` in the order the report lists them,
`report.checklist.*` in the order the institution answers them.
"""

TEXTS: dict[str, dict[str, str]] = {
    "report.title_annual": {
        "ja": "{year}年度 データ利用報告書（年次）",
        "en": "Annual data-usage report, fiscal year {year}",
    },
    "report.title_final": {
        "ja": "データ利用報告書（利用期間終了時）",
        "en": "Final data-usage report (end of the approved period)",
    },
    "report.platform": {"ja": "プラットフォーム", "en": "Platform"},
    "report.platform_name": {"ja": "ビジティング環境", "en": "Visiting workspace"},
    "report.query": {"ja": "照会条件", "en": "Query"},
    "report.covers": {"ja": "対象期間", "en": "Period covered"},
    "report.generated": {"ja": "作成日時", "en": "Generated"},
    "report.scope": {"ja": "対象", "en": "Scope"},
    "report.scope_all": {"ja": "全承認", "en": "every approval"},
    "report.provisional": {
        "ja": "暫定版：対象期間はまだ終わっていません（{now} までの記録）。",
        "en": "Provisional: the period has not ended yet (records up to {now}).",
    },
    "report.no_activity": {
        "ja": "この期間の利用記録はありません。",
        "en": "No activity was recorded in this period.",
    },
    "report.no_approvals": {
        "ja": "この期間に有効な承認はありません。",
        "en": "No approval in scope was held during this period.",
    },
    # sections
    "report.sec_approval": {"ja": "承認情報", "en": "Approval"},
    "report.sec_usage": {"ja": "利用状況", "en": "Usage"},
    "report.sec_security": {"ja": "セキュリティ", "en": "Security"},
    "report.sec_exports": {"ja": "成果物の持ち出し", "en": "Results taken out"},
    # the export airlock
    "report.export_requests": {"ja": "持ち出し申請", "en": "Export requests"},
    "report.export_files": {"ja": "申請されたファイル", "en": "Files requested"},
    "report.export_bytes": {"ja": "申請されたバイト数", "en": "Bytes requested"},
    "report.export_file_bytes": {"ja": "バイト数", "en": "Bytes"},
    "report.export_sha256": {"ja": "SHA-256", "en": "SHA-256"},
    "report.export_decisions": {"ja": "審査の判断", "en": "Review decisions"},
    "report.export_released": {"ja": "持ち出された申請", "en": "Requests released"},
    "report.export_rejected": {"ja": "却下された申請", "en": "Requests rejected"},
    "report.export_withdrawn": {"ja": "取り下げられた申請", "en": "Requests withdrawn"},
    "report.export_median_hours": {
        "ja": "申請から判断までの時間（中央値、時間）",
        "en": "Median time from request to decision (hours)",
    },
    "report.export_median_note": {
        "ja": "対象期間内に申請され、判断（{states}）が出た申請ごとに、申請から最初の判断までの時間の中央値。",
        "en": "The median, over the requests made and settled in the period, of the time "
        "from the request to the first review that settled it ({states}).",
    },
    "report.export_released_files": {"ja": "持ち出されたファイル", "en": "Files released"},
    "report.export_request": {"ja": "申請", "en": "Request"},
    "report.export_file": {"ja": "ファイル", "en": "File"},
    "report.export_released_at": {"ja": "持ち出し日時", "en": "Released"},
    "report.sec_charts": {"ja": "グラフ", "en": "Charts"},
    "report.sec_publications": {"ja": "成果発表", "en": "Publications"},
    "report.sec_checklist": {"ja": "自己点検チェックリスト", "en": "Self-assessment checklist"},
    "report.sec_sources": {
        "ja": "数値の出典（監査ログの照会）",
        "en": "Where each figure comes from",
    },
    "report.sec_rules": {"ja": "集計の規則", "en": "How the figures are computed"},
    "report.sec_audit": {"ja": "監査ログの検証", "en": "Audit-chain verification"},
    # approval fields
    "report.approval_id": {"ja": "承認番号", "en": "Approval ID"},
    "report.institution": {"ja": "利用機関", "en": "Institution"},
    "report.purpose": {"ja": "利用目的", "en": "Purpose"},
    "report.period": {"ja": "利用期間", "en": "Approved period"},
    "report.period_in_window": {
        "ja": "対象期間内の利用可能期間",
        "en": "Within the period covered",
    },
    "report.extended_from": {
        "ja": "（延長前の終了日 {end}）",
        "en": " (extended; applied end {end})",
    },
    "report.revoked_at": {"ja": "取消日時", "en": "Revoked at"},
    "report.handlers": {"ja": "データ取扱者", "en": "Data handlers"},
    "report.handler_changes": {
        "ja": "データ取扱者・承認内容の変更",
        "en": "Changes during the period",
    },
    "report.no_changes": {"ja": "変更なし", "en": "none"},
    "report.added": {"ja": "追加", "en": "added"},
    "report.removed": {"ja": "削除", "en": "removed"},
    "report.datasets_sites": {"ja": "データセットと提供機関", "en": "Datasets and sites"},
    "report.dataset": {"ja": "データセット", "en": "Dataset"},
    "report.site": {"ja": "提供機関（サイト）", "en": "Site"},
    "report.used": {"ja": "利用", "en": "Used"},
    "report.yes": {"ja": "あり", "en": "yes"},
    "report.no": {"ja": "なし", "en": "no"},
    "report.user": {"ja": "取扱者", "en": "Handler"},
    # usage
    "report.sessions": {"ja": "セッション数", "en": "Sessions"},
    "report.server_hours": {"ja": "サーバー利用時間（時間）", "en": "Server hours"},
    "report.cpu_hours": {"ja": "CPU時間（コア時間）", "en": "CPU hours (core-hours)"},
    "report.memory_hours": {"ja": "メモリ時間（GiB時間）", "en": "Memory hours (GiB-hours)"},
    "report.quota": {"ja": "割当て（CPU / メモリ）", "en": "Quota (CPU / memory)"},
    "report.kernel_starts": {"ja": "カーネル起動回数", "en": "Kernel starts"},
    "report.usage_by_site": {"ja": "サイト別の利用", "en": "Use per site"},
    "report.usage_by_user": {"ja": "取扱者別の利用", "en": "Use per data handler"},
    "report.data_access": {
        "ja": "データセット別のファイルアクセス",
        "en": "Files accessed per dataset",
    },
    "report.files": {"ja": "ファイル数", "en": "Files"},
    "report.opens": {"ja": "アクセス回数", "en": "Opens"},
    "report.federation": {"ja": "連合解析クエリ", "en": "Federation queries"},
    "report.task": {"ja": "タスク", "en": "Task"},
    "report.queries": {"ja": "クエリ数", "en": "Queries"},
    "report.refused": {"ja": "拒否", "en": "Refused"},
    "report.suppressions": {"ja": "秘匿処理", "en": "Suppressions"},
    "report.suppressed_items": {"ja": "秘匿した項目数", "en": "Items withheld"},
    "report.downloads": {"ja": "ダウンロード", "en": "Downloads"},
    "report.downloads_allowed": {"ja": "許可されたダウンロード", "en": "Downloads allowed"},
    "report.downloads_allowed_bytes": {"ja": "許可されたダウンロード量", "en": "Volume downloaded"},
    "report.downloads_blocked": {"ja": "遮断されたダウンロード", "en": "Downloads blocked"},
    "report.reason": {"ja": "理由", "en": "Reason"},
    "report.count": {"ja": "件数", "en": "Count"},
    "report.total": {"ja": "合計", "en": "Total"},
    "report.none": {"ja": "なし", "en": "none"},
    # security
    "report.suspensions": {"ja": "利用停止", "en": "Suspensions"},
    "report.suspension_actions": {
        "ja": "利用停止の処分（記録）",
        "en": "Suspension actions recorded",
    },
    "report.reinstatements": {"ja": "利用停止の解除（記録）", "en": "Reinstatements recorded"},
    "report.suspended_from": {"ja": "停止開始", "en": "From"},
    "report.suspended_until": {"ja": "解除", "en": "Lifted"},
    "report.still_suspended": {"ja": "継続中", "en": "still in force"},
    "report.enforcement_stops": {
        "ja": "強制停止されたサーバー",
        "en": "Servers stopped by the enforcer",
    },
    "report.kernel_refused": {
        "ja": "期間外のカーネル起動拒否",
        "en": "Kernel starts refused (period)",
    },
    "report.period_end_events": {"ja": "期間終了によるサーバー停止", "en": "Period-end shutdowns"},
    # egress
    "report.sec_egress": {"ja": "データの持ち出し（外部への送信量）", "en": "Egress"},
    "report.egress_intro": {
        "ja": "各サーバーからブラウザ等へ送られたデータ量（チャネル別、同じ内容は1日1回）と、"
        "表示された対象者の人数（日ごとの異なり人数の合計）。警告・上限に達した日数、"
        "出力の差し止め、遮断されたダウンロードも示す。",
        "en": "What each server sent to browsers and other clients, by channel (each content "
        "once a day), and the cohort people whose rows were shown (distinct per day, summed "
        "over the days); the days that reached the alert and the cap, outputs withheld and "
        "downloads blocked.",
    },
    "report.egress_ledger": {
        "ja": "取扱者・サイト・チャネル別の送信量",
        "en": "Ledger per handler, site and channel",
    },
    "report.egress_levels": {
        "ja": "取扱者・サイト別の警告・上限・差し止め",
        "en": "Alerts, caps and blocks per handler and site",
    },
    "report.channel": {"ja": "チャネル", "en": "Channel"},
    "report.egress_bytes": {"ja": "送信量", "en": "Bytes sent"},
    "report.egress_contents": {"ja": "内容の数", "en": "Distinct contents"},
    "report.egress_people": {"ja": "表示人数（人日）", "en": "People shown (person-days)"},
    "report.egress_days": {"ja": "送信のあった日数", "en": "Days with egress"},
    "report.egress_days_alert": {"ja": "警告に達した日数", "en": "Days at the alert"},
    "report.egress_days_cap": {"ja": "上限に達した日数", "en": "Days at the cap"},
    "report.outputs_withheld": {"ja": "差し止めた出力", "en": "Outputs withheld"},
    # the query-set audit
    "report.sec_query_audit": {"ja": "照会集合監査", "en": "Query-set audit"},
    "report.qa_intro": {
        "ja": "各サイトのゲートウェイは、承認ごと・データセットごとに、これまでに回答した照会の対象者の"
        "集合を記録し、以前の回答と組み合わせると特定の個人を割り出せる照会を拒否する。回答した連合解析"
        "クエリの数、この監査が拒否した照会の数（規則別）、事務局による監査のリセットとその理由を示す。",
        "en": "Each site's gateway keeps, per approval and dataset, the sets of people its answers "
        "summed over, and refuses a query that, put together with earlier answers, would single "
        "out a person. The federated queries answered, the queries this audit refused (by rule), "
        "and the secretariat's resets of the audit with their reasons.",
    },
    "report.qa_answered": {"ja": "回答した連合解析クエリ", "en": "Federated queries answered"},
    "report.qa_refused": {
        "ja": "照会集合監査が拒否したクエリ",
        "en": "Queries refused by the query-set audit",
    },
    "report.qa_resets": {"ja": "監査のリセット", "en": "Resets of the audit"},
    "report.qa_rule": {"ja": "規則", "en": "Rule"},
    "report.qa_reset_at": {"ja": "リセット日時", "en": "Reset at"},
    "report.audit_ok": {
        "ja": "検証済み：{records} 件の記録（seq {first} 〜 {last}）のハッシュ連鎖は正しい。",
        "en": "Verified: the hash chain holds for {records} records (seq {first} .. {last}).",
    },
    "report.audit_ok_empty": {
        "ja": "検証済み：対象期間の記録は 0 件です。",
        "en": "Verified: 0 records in the period.",
    },
    # charts
    "report.chart_hours": {
        "ja": "月別・サイト別のサーバー利用時間",
        "en": "Server hours per month and site",
    },
    "report.chart_federation": {
        "ja": "月別の連合解析クエリ数",
        "en": "Federation queries per month",
    },
    "report.chart_blocked": {
        "ja": "月別の遮断されたダウンロード",
        "en": "Blocked downloads per month",
    },
    "report.hours": {"ja": "時間", "en": "hours"},
    "report.month": {"ja": "月", "en": "month"},
    # fill-in parts
    "report.publications_intro": {
        "ja": "利用機関が記入してください：本期間に公表した論文・学会発表など（提供機関と本プラットフォームの引用を含む）。",
        "en": "To be filled in by the institution: papers and talks published in the period "
        "(with the providing sites and the platform cited).",
    },
    "report.pub_title": {"ja": "題名", "en": "Title"},
    "report.pub_authors": {"ja": "著者", "en": "Authors"},
    "report.pub_venue": {"ja": "掲載誌・学会", "en": "Journal or meeting"},
    "report.pub_date": {"ja": "発表日", "en": "Date"},
    "report.pub_doi": {"ja": "DOI・URL", "en": "DOI or URL"},
    "report.checklist_intro": {
        "ja": "利用機関が記入してください（はい／いいえ／該当なし、および補足）。",
        "en": "To be filled in by the institution (yes / no / n.a., and a note).",
    },
    "report.answer": {"ja": "回答", "en": "Answer"},
    "report.note": {"ja": "補足", "en": "Note"},
    "report.figure": {"ja": "項目", "en": "Figure"},
    "report.value": {"ja": "値", "en": "Value"},
    "report.recheck": {"ja": "再実行の方法", "en": "Re-run with"},
    "report.sources_intro": {
        "ja": "各数値は監査ログの照会から求めた。JSON 形式に照会条件と再実行コマンドを全て記載している。",
        "en": "Each figure is a query of the audit log. The JSON format lists every query "
        "and a command that re-runs it.",
    },
    "report.japan_time": {"ja": "日本時間", "en": "Japan time"},
    # how the figures are computed: the rules, in the order the report lists them
    "report.rule.window": {
        "ja": "対象期間は日本時間で区切り、開始時刻を含み終了時刻を含まない [開始, 終了) とする。"
        "年度は4月1日 0:00（日本時間）から翌年4月1日 0:00 まで。",
        "en": "The period covered is [start, end) in Japan time: the start is in, the end is "
        "not. A fiscal year runs from 1 April 00:00 JST to the next 1 April 00:00 JST.",
    },
    "report.rule.sessions": {
        "ja": "セッション数：対象期間内の server-start 記録の数（サイト別）。",
        "en": "Sessions: server-start records in the period, per site.",
    },
    "report.rule.server-hours": {
        "ja": "サーバー利用時間：取扱者・サイトごとに server-start と次の server-stop"
        "（または同じ取扱者・サイトの enforcement-stop）を組にした時間。停止記録がない場合は次の "
        "server-start まで、それもなければ対象期間の終わり（作成時点がそれより前なら作成時点）まで。"
        "対象期間の開始前から動いていたサーバーは開始時刻から数える。",
        "en": "Server hours: per handler and site, each server-start paired with the next "
        "server-stop (or an enforcement-stop of the same handler and site). Without a stop "
        "record, a server counts until its next server-start, else until the end of the period "
        "(or the time the report was made, when earlier). A server already running when the "
        "period starts counts from the start.",
    },
    "report.rule.cpu-hours": {
        "ja": "CPU時間・メモリ時間：サーバー利用時間 × サーバー起動時点で有効な割当て（CPUコア数・メモリ）。"
        "割当ては提供機関の既定値、承認の割当て、サイト管理者の設定（site-admin-action 記録）から求め、"
        "実際の使用量ではなく上限である。",
        "en": "CPU and memory hours: server hours × the quota in effect when the server "
        "started (CPU cores, memory): the site's default, the approval's quota and the site "
        "admins' settings (site-admin-action records). They measure the quota, not what "
        "was used.",
    },
    "report.rule.egress-ledger": {
        "ja": "送信量：ゲートは取扱者・サイト・チャネル・日本時間の日ごとに、その日の累計を egress-tally "
        "記録として送る。各日の最後の記録（時刻順、同時刻は seq 順）をその日の値とし、対象期間の日について合計する。"
        "表示人数はその日に表示された異なる対象者の数で、日をまたいだ合計（人日）である。警告・上限の日数は "
        "egress-alert・egress-cap 記録の異なる日の数。",
        "en": "Egress: the gate sends, per handler, site, channel and Japan-time day, the day's "
        "running totals as egress-tally records. The last record of each day (by time, then "
        "seq) is that day's figure; the figures are the sum over the days of the period. "
        "People are the distinct cohort people shown that day, summed over days "
        "(person-days). Days at the alert or the cap are the distinct days of the "
        "egress-alert and egress-cap records.",
    },
    "report.rule.query-audit": {
        "ja": "照会集合監査：回答数は outcome が answered の federation-query 記録の数。拒否数は outcome が "
        "refused で code が query_set_audit の記録の数で、data.audit.rule の規則ごとに数える。リセットは "
        "action が reset-query-audit の secretariat-action 記録で、対象期間内のものを理由とともに示す。",
        "en": "Query-set audit: answered queries are the federation-query records whose outcome is "
        "answered; refusals are those whose outcome is refused with the code query_set_audit, "
        "counted per rule (data.audit.rule); resets are the secretariat-action records with the "
        "action reset-query-audit in the period, listed with their reasons.",
    },
    "report.rule.attribution": {
        "ja": "承認番号を持つ記録はその承認に、承認番号のない強制停止・利用停止の記録は、その取扱者を含み"
        "そのサイトを対象とする承認に数える。",
        "en": "Records that carry an approval id count for that approval; enforcement-stop and "
        "suspension records, which carry none, count for each approval that names the person "
        "(and covers the site).",
    },
    # the self-assessment checklist, in the order the institution answers it
    "report.checklist.security-manager": {
        "ja": "セキュリティ管理者を置き、申請書に記載されたデータ取扱者のみがデータを利用した。",
        "en": "A security manager was named, and only the data handlers named in the "
        "application used the data.",
    },
    "report.checklist.purpose-period": {
        "ja": "承認された利用目的の範囲内、かつ承認された利用期間内でのみ利用した。",
        "en": "The data were used only for the approved purpose and within the approved period.",
    },
    "report.checklist.no-disclosure": {
        "ja": "得られたデータ・情報を第三者に提供・開示していない。",
        "en": "No data or information obtained through the platform was given to third parties.",
    },
    "report.checklist.no-reidentification": {
        "ja": "個人の再識別を試みていない。",
        "en": "No attempt was made to re-identify any person.",
    },
    "report.checklist.accounts": {
        "ja": "アカウント・パスワードを共有せず、ログインに用いた端末はセキュリティガイドラインに従っている。",
        "en": "Accounts and passwords were not shared; the devices used to log in follow "
        "the security guidelines.",
    },
    "report.checklist.incidents": {
        "ja": "事故（紛失・漏えい・不正アクセス等）は発生していない。発生した場合は直ちに報告した。",
        "en": "No incident (loss, leakage, unauthorised access) occurred, or each was "
        "reported at once.",
    },
    "report.checklist.publications": {
        "ja": "公表した成果は提供機関と本プラットフォームを引用し、個人単位のデータを含まない。",
        "en": "Published results cite the providing sites and the platform and contain no "
        "individual-level data.",
    },
    "report.checklist.changes": {
        "ja": "申請内容の変更（データ取扱者を含む）は事務局に届け出た。",
        "en": "Every change to the application (data handlers included) was notified to "
        "the secretariat.",
    },
    # why a download was blocked (the guard's reasons)
    "report.block_reason.under-data": {"ja": "/data 配下のファイル", "en": "a file under /data"},
    "report.block_reason.raw-name": {"ja": "生データのファイル名", "en": "a raw-data file name"},
    "report.block_reason.raw-content": {"ja": "生データの内容", "en": "raw-data content"},
    "report.block_reason.too-large": {"ja": "サイズ上限超過", "en": "over the size limit"},
    "report.block_reason.raw-outputs-hidden": {
        "ja": "出力中の生データを非表示",
        "en": "raw records hidden in outputs",
    },
    "report.block_reason.raw-response": {"ja": "応答中の生データ", "en": "raw data in a response"},
    "report.block_reason.individual-level": {
        "ja": "個人単位のデータ（ゲート）",
        "en": "individual-level data (gate)",
    },
    "report.block_reason.egress-cap": {"ja": "1日の送信上限", "en": "the day's egress cap"},
    "report.block_reason.airlock": {
        "ja": "エアロックのサイト（持ち出し申請のみ）",
        "en": "an airlock site (export requests only)",
    },
}
