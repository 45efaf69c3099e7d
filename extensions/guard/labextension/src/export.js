// Export requests from JupyterLab: "Request export / 持ち出し申請" in the file
// browser's context menu, and a left-area panel with the person's requests at
// this site and where each stands.
//
// The browser never talks to the hub's export service itself: it asks its own
// server (GET and POST <baseUrl>visiting/exports), whose guard passes the call
// on with the server's own hub token and refuses plainly wrong input first
// (extensions/guard/exports.py). A refusal is {"message": "日本語 / English", "field"}.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

export const COMMAND = 'visiting:request-export';
export const PANEL_ID = 'visiting-exports-panel';
const REFRESH_SECONDS = 30;
// The relay's own limit (exports.MAX_PURPOSE).
const MAX_PURPOSE = 500;
// Names shown per request in the panel before "and N more".
const FILES_SHOWN = 5;

// Every text a person reads here, by key, in Japanese and English.
const TEXT = {
  command: { ja: '持ち出し申請', en: 'Request export' },
  caption: {
    ja: '選んだファイルやフォルダの持ち出し（エアロック）を申請します',
    en: 'Ask to take the chosen files or folders out of the site (the airlock)'
  },
  panelTitle: { ja: '持ち出し', en: 'Exports' },
  heading: { ja: '持ち出し申請', en: 'Export requests' },
  refresh: { ja: '更新', en: 'Refresh' },
  howTo: {
    ja: 'ファイルブラウザでファイルかフォルダを選び、右クリックで「Request export / 持ち出し申請」を選んでください。',
    en: 'Choose files or a folder in the file browser, right-click and choose "Request export / 持ち出し申請".'
  },
  airlock: {
    ja: 'このサイトではファイルは持ち出し申請（エアロック）からのみ持ち出せます。直接ダウンロードはできません。',
    en: 'At this site files leave only through an export request (the airlock): there are no direct downloads.'
  },
  loading: { ja: '読み込み中…', en: 'Loading…' },
  none: { ja: 'このサイトでの持ち出し申請はまだありません。', en: 'No export requests at this site yet.' },
  noAnswer: { ja: '申請の一覧を読めませんでした', en: 'Could not read your requests' },
  dialogTitle: { ja: '持ち出し申請', en: 'Request export' },
  chosen: { ja: '持ち出すファイル・フォルダ', en: 'Files and folders to export' },
  purpose: { ja: '目的', en: 'Purpose' },
  purposeHint: {
    ja: '何に使うか（論文、発表など）。審査する人が読みます。',
    en: 'What the files are for (a paper, a talk, ...). The reviewers read it.'
  },
  purposeNeeded: {
    ja: '持ち出しの目的を書いてください。',
    en: 'Write what the files are for.'
  },
  submit: { ja: '申請', en: 'Request' },
  cancel: { ja: 'キャンセル', en: 'Cancel' },
  close: { ja: '閉じる', en: 'Close' },
  nothingChosen: {
    ja: 'ファイルブラウザでファイルかフォルダを選んでください。',
    en: 'Choose files or a folder in the file browser first.'
  },
  accepted: { ja: '申請を受け付けました', en: 'Your request is in' },
  refused: { ja: '申請できませんでした', en: 'The request was refused' },
  acceptedBody: { ja: '申請 {id}: {state_ja}', en: 'Request {id}: {state_en}' },
  checksFailed: {
    ja: '自動チェックで不合格になったファイルがあります（審査者が理由を付けて認めない限り承認されません）:',
    en: 'Some files failed the automatic checks (they are not approved unless a reviewer overrides with a reason):'
  },
  checksPassed: { ja: '自動チェック: すべて合格', en: 'Automatic checks: all passed' },
  checksPending: { ja: '自動チェック: 未実施', en: 'Automatic checks: not run yet' },
  checksFailedShort: { ja: '自動チェック: {count} 件不合格', en: 'Automatic checks: {count} failed' },
  checksError: { ja: '凍結できませんでした: {error}', en: 'Could not be frozen: {error}' },
  created: { ja: '申請日時', en: 'Requested' },
  files: { ja: 'ファイル', en: 'Files' },
  moreFiles: { ja: 'ほか {count} 件', en: 'and {count} more' },
  reason: { ja: '審査者のコメント', en: "Reviewer's note" },
  download: {
    ja: 'ハブの持ち出しページからダウンロードできます',
    en: "Download it from the hub's exports page"
  },
  until: { ja: '{date} まで', en: 'until {date}' },
  unknownState: { ja: '不明な状態', en: 'unknown state' }
};

// The states of a request (extensions/contracts/export.py STATES).
const STATES = {
  submitted: { ja: '受付済み', en: 'submitted' },
  checked: { ja: '自動チェック済み', en: 'checked' },
  'under-review': { ja: '審査中', en: 'under review' },
  'changes-requested': { ja: '修正依頼', en: 'changes requested' },
  approved: { ja: '承認済み', en: 'approved' },
  rejected: { ja: '却下', en: 'rejected' },
  released: { ja: '受け取り済み', en: 'released' },
  withdrawn: { ja: '取り下げ', en: 'withdrawn' }
};
// The states whose files the requester may download (hub/platform/airlock.py RELEASE_STATES).
const RELEASE_STATES = ['approved', 'released'];

function fill(template, fields) {
  return template.replace(/\{(\w+)\}/g, (all, name) =>
    name in fields ? String(fields[name]) : all
  );
}

// "日本語 / English" for the text `key`.
function t(key, fields = {}) {
  const text = TEXT[key];
  return `${fill(text.ja, fields)} / ${fill(text.en, fields)}`;
}

// The state's words by language, for a text that names it once in each.
function stateFields(state) {
  const text = STATES[state] || TEXT.unknownState;
  return { state_ja: text.ja, state_en: text.en };
}

function stateText(state) {
  const text = STATES[state] || TEXT.unknownState;
  return `${text.ja} / ${text.en}`;
}

const exportIcon = new LabIcon({
  name: 'visiting:export',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M5 3h9v2H5v14h14v-9h2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/>' +
    '<path d="M15 3h6v6h-2V6.41l-7.29 7.3-1.42-1.42L17.59 5H15z"/>' +
    '</g></svg>'
});

// -- the server ----------------------------------------------------------------

async function callRelay(settings, init) {
  const url = URLExt.join(settings.baseUrl, 'visiting/exports');
  // makeRequest adds the _xsrf cookie as X-XSRFToken and the same-origin credentials.
  const response = await ServerConnection.makeRequest(url, init, settings);
  let doc = {};
  try {
    doc = await response.json();
  } catch (error) {
    // an answer that is not JSON: a proxy's error page; the status says enough
  }
  return { ok: response.ok, status: response.status, doc: doc || {} };
}

function refusalText(answer) {
  if (answer.doc && typeof answer.doc.message === 'string') {
    return answer.doc.message;
  }
  return `HTTP ${answer.status}`;
}

// The hub's exports page, where a released request's files are downloaded. The hub's
// services sit beside its own prefix: /hub/ -> /services/admin/exports.
export function exportsPageUrl() {
  const hubPrefix = PageConfig.getOption('hubPrefix');
  if (!hubPrefix) {
    return '/services/admin/exports';
  }
  const base = hubPrefix.replace(/hub\/?$/, '') || '/';
  return PageConfig.getOption('hubHost') + URLExt.join(base, 'services/admin/exports');
}

// -- small DOM helpers ------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) {
      continue;
    }
    if (name === 'className') {
      node.className = value;
    } else {
      node.setAttribute(name, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child);
    }
  }
  return node;
}

function when(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) {
    return '—';
  }
  const two = n => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}`
  );
}

// Each failed check of a request: "file: check (detail)".
function failedChecks(request) {
  const manifest = request.manifest;
  if (!manifest || !Array.isArray(manifest.files)) {
    return [];
  }
  const failed = [];
  for (const file of manifest.files) {
    for (const check of file.checks || []) {
      if (!check.ok) {
        failed.push(`${file.name}: ${check.check}${check.detail ? ` (${check.detail})` : ''}`);
      }
    }
  }
  return failed;
}

function checksNode(request) {
  const manifest = request.manifest;
  const failed = failedChecks(request);
  let outcome;
  let summary;
  if (!manifest) {
    outcome = 'pending';
    summary = t('checksPending');
  } else if (manifest.error) {
    outcome = 'failed';
    summary = t('checksError', { error: manifest.error });
  } else if (failed.length || manifest.ok === false) {
    outcome = 'failed';
    summary = t('checksFailedShort', { count: failed.length });
  } else {
    outcome = 'passed';
    summary = t('checksPassed');
  }
  const node = el('div', { className: 'visiting-export-checks', 'data-checks': outcome }, summary);
  if (failed.length) {
    node.append(el('ul', {}, ...failed.map(line => el('li', {}, line))));
  }
  return node;
}

// -- the request dialog -----------------------------------------------------------

class RequestForm extends Widget {
  constructor(paths, purpose = '', problem = '') {
    super();
    this.addClass('visiting-export-dialog');
    this.input = el('input', {
      id: 'visiting-export-purpose',
      type: 'text',
      maxlength: String(MAX_PURPOSE),
      required: 'required',
      'aria-describedby': 'visiting-export-purpose-hint'
    });
    this.input.value = purpose;
    this.node.append(
      el('div', { className: 'visiting-export-label' }, t('chosen')),
      el(
        'ul',
        { id: 'visiting-export-paths', className: 'visiting-export-paths' },
        ...paths.map(p => el('li', { 'data-path': p.path }, p.isDir ? `${p.path}/` : p.path))
      ),
      el(
        'label',
        { for: 'visiting-export-purpose', className: 'visiting-export-label' },
        `${TEXT.purpose.ja} / ${TEXT.purpose.en}`
      ),
      this.input,
      el(
        'div',
        { id: 'visiting-export-purpose-hint', className: 'visiting-export-hint' },
        t('purposeHint')
      ),
      problem ? el('div', { className: 'visiting-export-problem', role: 'alert' }, problem) : ''
    );
  }

  getValue() {
    return this.input.value;
  }
}

// The purpose for `paths`, asked until one is written; null when the person cancels.
async function askPurpose(paths) {
  let purpose = '';
  let problem = '';
  for (;;) {
    const result = await showDialog({
      title: t('dialogTitle'),
      body: new RequestForm(paths, purpose, problem),
      focusNodeSelector: '#visiting-export-purpose',
      buttons: [
        Dialog.cancelButton({ label: t('cancel') }),
        Dialog.okButton({ label: t('submit'), className: 'visiting-export-submit' })
      ]
    });
    if (!result.button.accept) {
      return null;
    }
    purpose = (result.value || '').trim();
    if (purpose) {
      return purpose;
    }
    problem = t('purposeNeeded');
  }
}

function showAnswer(answer) {
  const body = new Widget();
  if (answer.ok) {
    const request = answer.doc;
    body.addClass('visiting-export-result');
    body.node.setAttribute('data-export-id', request.id || '');
    body.node.setAttribute('data-export-state', request.state || '');
    body.node.append(
      el('p', {}, t('acceptedBody', { id: request.id, ...stateFields(request.state) }))
    );
    const failed = failedChecks(request);
    if (failed.length) {
      body.node.append(
        el('p', {}, t('checksFailed')),
        el('ul', { className: 'visiting-export-failed' }, ...failed.map(f => el('li', {}, f)))
      );
    } else if (request.manifest && request.manifest.error) {
      body.node.append(el('p', {}, t('checksError', { error: request.manifest.error })));
    }
  } else {
    body.addClass('visiting-export-refusal');
    body.node.setAttribute('data-status', String(answer.status));
    if (answer.doc.field) {
      body.node.setAttribute('data-field', answer.doc.field);
    }
    body.node.append(el('p', {}, refusalText(answer)));
  }
  return showDialog({
    title: answer.ok ? t('accepted') : t('refused'),
    body,
    buttons: [Dialog.okButton({ label: t('close') })]
  });
}

// -- the panel ------------------------------------------------------------------------

export class ExportsPanel extends Widget {
  constructor(settings) {
    super();
    this.settings = settings;
    this.id = PANEL_ID;
    this.addClass('visiting-exports-panel');
    this.title.icon = exportIcon;
    this.title.caption = `${TEXT.panelTitle.ja} / ${TEXT.panelTitle.en}`;
    this._timer = null;
    this._loading = null;

    this.refreshButton = el(
      'button',
      { type: 'button', className: 'jp-Button visiting-exports-refresh', 'data-action': 'refresh' },
      t('refresh')
    );
    this.refreshButton.addEventListener('click', () => void this.refresh());
    this.airlockNote = el('p', { className: 'visiting-exports-airlock', hidden: 'hidden' });
    this.airlockNote.textContent = t('airlock');
    this.status = el('p', { className: 'visiting-exports-status', role: 'status' });
    this.list = el('ul', { className: 'visiting-exports-list' });
    this.node.append(
      el(
        'div',
        { className: 'visiting-exports-header' },
        el('h2', {}, t('heading')),
        this.refreshButton
      ),
      this.airlockNote,
      el('p', { className: 'visiting-exports-howto' }, t('howTo')),
      this.status,
      this.list
    );
  }

  // Ask the server again; a refresh already under way is the answer to this one too.
  refresh() {
    if (!this._loading) {
      this._loading = this._load().finally(() => {
        this._loading = null;
      });
    }
    return this._loading;
  }

  async _load() {
    if (!this.list.childElementCount) {
      this.status.textContent = t('loading');
    }
    this.node.setAttribute('data-loading', 'true');
    try {
      const answer = await callRelay(this.settings, { method: 'GET' });
      if ('airlock' in answer.doc) {
        this.airlockNote.hidden = !answer.doc.airlock;
      }
      if (answer.ok) {
        this.render(answer.doc.requests || []);
      } else {
        this.status.textContent = `${t('noAnswer')}: ${refusalText(answer)}`;
      }
    } catch (error) {
      // a restarting server: the last list stays, with a note
      this.status.textContent = `${t('noAnswer')}: ${error.message || error}`;
    } finally {
      this.node.removeAttribute('data-loading');
    }
  }

  render(requests) {
    const newest = [...requests].sort((a, b) =>
      String(b.created_at || '').localeCompare(String(a.created_at || ''))
    );
    this.status.textContent = newest.length ? '' : t('none');
    this.list.replaceChildren(...newest.map(request => this.row(request)));
  }

  row(request) {
    const names =
      request.manifest && Array.isArray(request.manifest.files) && request.manifest.files.length
        ? request.manifest.files.map(f => f.name)
        : request.paths || [];
    const shown = names.slice(0, FILES_SHOWN);
    const files = el(
      'div',
      { className: 'visiting-export-files', 'data-count': String(names.length) },
      `${t('files')} (${names.length}): ${shown.join(', ')}`,
      names.length > shown.length ? ` ${t('moreFiles', { count: names.length - shown.length })}` : null
    );
    const row = el(
      'li',
      {
        className: 'visiting-export-row',
        'data-export-id': request.id,
        'data-export-state': request.state
      },
      el(
        'div',
        { className: 'visiting-export-top' },
        el('span', { className: 'visiting-export-id' }, request.id),
        el(
          'span',
          { className: 'visiting-export-state', 'data-state': request.state },
          stateText(request.state)
        )
      ),
      el(
        'div',
        { className: 'visiting-export-created' },
        `${t('created')}: ${when(request.created_at)}`
      ),
      el('div', { className: 'visiting-export-purpose' }, request.purpose || ''),
      files,
      checksNode(request)
    );
    const note = lastNote(request);
    if (note) {
      row.append(el('div', { className: 'visiting-export-reason' }, `${t('reason')}: ${note}`));
    }
    if (RELEASE_STATES.includes(request.state)) {
      const until = request.release_until
        ? ` (${t('until', { date: when(request.release_until) })})`
        : '';
      row.append(
        el(
          'div',
          { className: 'visiting-export-download' },
          el(
            'a',
            { href: exportsPageUrl(), target: '_blank', rel: 'noopener noreferrer' },
            t('download')
          ),
          until
        )
      );
    }
    return row;
  }

  onAfterShow() {
    void this.refresh();
    this._every();
  }

  onAfterHide() {
    window.clearInterval(this._timer);
    this._timer = null;
  }

  onBeforeDetach() {
    this.onAfterHide();
  }

  _every() {
    window.clearInterval(this._timer);
    this._timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, REFRESH_SECONDS * 1000);
  }
}

// The reason of the latest review that gave one, for a request sent back or rejected.
function lastNote(request) {
  if (!['changes-requested', 'rejected'].includes(request.state)) {
    return '';
  }
  const reviews = (request.reviews || []).filter(r => r.reason);
  return reviews.length ? reviews[reviews.length - 1].reason : '';
}

// -- the plugin ---------------------------------------------------------------------------

// The chosen files and folders of the file browser, as names under the server's root.
function chosenPaths(browser, contents) {
  if (!browser) {
    return [];
  }
  return Array.from(browser.selectedItems()).map(item => ({
    path: contents.localPath(item.path),
    isDir: item.type === 'directory'
  }));
}

const exportPlugin = {
  id: '@visiting/guard-banner:export',
  description: 'Export requests: "Request export / 持ち出し申請" and the exports panel.',
  autoStart: true,
  optional: [IDefaultFileBrowser],
  activate: (app, browser) => {
    const settings = app.serviceManager.serverSettings;
    const contents = app.serviceManager.contents;
    const panel = new ExportsPanel(settings);
    app.shell.add(panel, 'left', { rank: 900 });

    app.commands.addCommand(COMMAND, {
      label: `${TEXT.command.en} / ${TEXT.command.ja}`,
      caption: t('caption'),
      icon: exportIcon,
      isEnabled: () => !!browser && !browser.selectedItems().next().done,
      execute: async () => {
        const paths = chosenPaths(browser, contents);
        if (!paths.length) {
          await showDialog({
            title: t('dialogTitle'),
            body: t('nothingChosen'),
            buttons: [Dialog.okButton({ label: t('close') })]
          });
          return;
        }
        const purpose = await askPurpose(paths);
        if (purpose === null) {
          return;
        }
        let answer;
        try {
          answer = await callRelay(settings, {
            method: 'POST',
            body: JSON.stringify({ paths: paths.map(p => p.path), purpose })
          });
        } catch (error) {
          answer = { ok: false, status: 0, doc: { message: String(error.message || error) } };
        }
        if (answer.ok) {
          app.shell.activateById(PANEL_ID);
          void panel.refresh();
        }
        await showAnswer(answer);
      }
    });
    app.contextMenu.addItem({
      command: COMMAND,
      selector: '.jp-DirListing-item[data-isdir]',
      rank: 13
    });
  }
};

export default exportPlugin;
