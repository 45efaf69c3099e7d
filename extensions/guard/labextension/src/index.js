// The guard's JupyterLab plugins: the researcher's usage period, shown at the
// top of JupyterLab (here), and export requests (export.js).
//
// The guard server extension answers GET <baseUrl>visiting/period with the
// approval's end date and a ready-made text in Japanese and English; this
// plugin only shows that text and asks again every `refresh_seconds`.
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import exportPlugin from './export.js';

const LEVELS = ['info', 'warning', 'ended'];
const DEFAULT_REFRESH_SECONDS = 60;
// A server answering 0 must not turn the banner into a busy loop.
const MIN_REFRESH_SECONDS = 5;

class PeriodBanner extends Widget {
  constructor() {
    super();
    this.id = 'visiting-period-banner';
    this.addClass('visiting-banner');
    this.node.setAttribute('role', 'status');
    // Nothing to show until the server has answered once.
    this.hide();
  }

  render(period) {
    const level = LEVELS.includes(period.level) ? period.level : 'info';
    for (const other of LEVELS) {
      this.toggleClass(`visiting-banner-${other}`, other === level);
    }
    this.node.textContent = [period.text_ja, period.text_en].filter(Boolean).join(' / ');
    this.setHidden(!this.node.textContent);
  }
}

async function fetchPeriod(settings) {
  const url = `${settings.baseUrl}visiting/period`;
  // makeRequest adds the _xsrf cookie as X-XSRFToken and the same-origin credentials.
  const response = await ServerConnection.makeRequest(url, { method: 'GET' }, settings);
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  return response.json();
}

function refreshSeconds(period) {
  const seconds = Number(period.refresh_seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    return DEFAULT_REFRESH_SECONDS;
  }
  return Math.max(seconds, MIN_REFRESH_SECONDS);
}

const plugin = {
  id: '@visiting/guard-banner:plugin',
  description: "Shows the researcher's usage period (approval end date) above JupyterLab.",
  autoStart: true,
  activate: app => {
    const banner = new PeriodBanner();
    app.shell.add(banner, 'top', { rank: 0 });
    const settings = app.serviceManager.serverSettings;
    let delay = DEFAULT_REFRESH_SECONDS;

    const refresh = async () => {
      try {
        const period = await fetchPeriod(settings);
        banner.render(period);
        delay = refreshSeconds(period);
      } catch (error) {
        // Keep the last text: a restarting server is no news to the researcher.
        console.warn('visiting-period-banner: could not read the usage period', error);
      }
      window.setTimeout(refresh, delay * 1000);
    };
    void refresh();
  }
};

export default [plugin, exportPlugin];
