// The demo OpenID Connect provider: panva's oidc-provider with a password-checked
// login for the demo accounts in policies/demo/users.yaml.
//
// DEMO ONLY. The passwords are published; this provider listens on loopback and
// exists so that the demo and the tests log in through a real OIDC flow. A real
// platform points the hub at its national IdP instead.
//
// Configuration (environment):
//   VISITING_IDP_HOST (127.0.0.1), VISITING_IDP_PORT (9000),
//   VISITING_IDP_ISSUER (http://HOST:PORT),
//   VISITING_IDP_USERS (policies/demo/users.yaml),
//   VISITING_IDP_CLIENTS (JSON file: [{client_id, client_secret, redirect_uris,
//     post_logout_redirect_uris?, token_endpoint_auth_method?}]; default: one
//     client "visiting-hub" with VISITING_IDP_DEFAULT_SECRET for the demo hub),
//   VISITING_IDP_JWKS (JSON JWKS with private keys; default: a new RSA key),
//   VISITING_IDP_COOKIE_KEYS (comma-separated; default: random at start).

import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';
import YAML from 'yaml';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

class SetupError extends Error {}

// ---------------------------------------------------------------------------
// configuration files

function readUsers(file) {
  let doc;
  try {
    doc = YAML.parse(readFileSync(file, 'utf8'), { uniqueKeys: true });
  } catch (e) {
    throw new SetupError(`${file}: ${e.code === 'ENOENT' ? 'file not found' : `cannot be read as YAML: ${e.message.split('\n')[0]}`}`);
  }
  if (!doc || !Array.isArray(doc.users)) {
    throw new SetupError(`${file}: users: missing field (a list of accounts)`);
  }
  const users = new Map();
  doc.users.forEach((u, i) => {
    for (const field of ['username', 'password', 'name', 'email']) {
      if (typeof u?.[field] !== 'string' || !u[field]) {
        throw new SetupError(`${file}: users[${i}].${field}: missing field`);
      }
    }
    if (users.has(u.username)) {
      throw new SetupError(`${file}: users[${i}].username: user '${u.username}' is listed twice`);
    }
    users.set(u.username, u);
  });
  return users;
}

function readClients(file, defaultRedirect) {
  if (!file) {
    return [{
      client_id: 'visiting-hub',
      client_secret: process.env.VISITING_IDP_DEFAULT_SECRET || 'visiting-demo-secret',
      redirect_uris: [defaultRedirect],
      post_logout_redirect_uris: ['http://127.0.0.1:8000/hub/'],
    }];
  }
  let clients;
  try {
    clients = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new SetupError(`${file}: ${e.code === 'ENOENT' ? 'file not found' : `not JSON: ${e.message}`}`);
  }
  if (!Array.isArray(clients) || clients.length === 0) {
    throw new SetupError(`${file}: expected a non-empty list of clients`);
  }
  return clients.map((c, i) => {
    for (const field of ['client_id', 'client_secret', 'redirect_uris']) {
      if (!c?.[field]) throw new SetupError(`${file}: [${i}].${field}: missing field`);
    }
    return {
      token_endpoint_auth_method: 'client_secret_basic',
      post_logout_redirect_uris: [],
      ...c,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    };
  });
}

function signingKeys() {
  if (process.env.VISITING_IDP_JWKS) {
    return JSON.parse(readFileSync(process.env.VISITING_IDP_JWKS, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', kid: `demo-${randomBytes(4).toString('hex')}` }] };
}

// ---------------------------------------------------------------------------
// pages

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function loginPage({ uid, clientId, message = '', username = '' }) {
  return `<!doctype html>
<html lang="ja">
<head><meta charset="utf-8"><title>ログイン / Log in — Visiting workspace (demo)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,"Noto Sans CJK JP",sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}
 .demo{background:#fff3cd;border:1px solid #e0c36a;padding:.6rem .8rem;border-radius:6px;margin-bottom:1.2rem}
 .error{background:#f8d7da;border:1px solid #d9a0a7;padding:.6rem .8rem;border-radius:6px;margin:1rem 0}
 label{display:block;margin:.8rem 0 .2rem} input{width:100%;padding:.45rem;font-size:1rem;box-sizing:border-box}
 button{margin-top:1.2rem;padding:.55rem 1.4rem;font-size:1rem}
 small{color:#555}
</style></head>
<body>
<h1>ログイン / Log in</h1>
<div class="demo"><strong>Demo accounts only — デモ専用</strong><br>
<small>This sign-in page belongs to the demo identity provider. Its passwords are public; never use it for real data.
このログイン画面はデモ用の認証サーバーです。パスワードは公開されています。実データには使用しないでください。</small></div>
${message ? `<div class="error" role="alert">${escapeHtml(message)}</div>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label for="username">ユーザー名 / User name</label>
  <input id="username" name="username" value="${escapeHtml(username)}" autofocus>
  <label for="password">パスワード / Password</label>
  <input id="password" name="password" type="password">
  <button type="submit">ログイン / Log in</button>
</form>
<p><small>Signing in to / ログイン先: ${escapeHtml(clientId)}</small></p>
</body></html>`;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    ...headers,
  });
  res.end(body);
}

async function readForm(req, limit = 16 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

function sameSecret(given, expected) {
  const a = Buffer.from(String(given));
  const b = Buffer.from(String(expected));
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------
// provider

function buildProvider({ issuer, users, clients }) {
  const firstParty = new Set(clients.map((c) => c.client_id));
  const cookieKeys = process.env.VISITING_IDP_COOKIE_KEYS
    ? process.env.VISITING_IDP_COOKIE_KEYS.split(',')
    : [randomBytes(32).toString('hex')];

  const provider = new Provider(issuer, {
    clients,
    jwks: signingKeys(),
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // userinfo and the ID token both carry the profile claims the hub reads
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
    },
    async findAccount(_ctx, sub) {
      const u = users.get(sub);
      if (!u) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            preferred_username: u.username,
            name: u.name,
            email: u.email,
            email_verified: true,
          };
        },
      };
    },
    // The platform's own clients (the hub) are first-party: the person already
    // agreed to the platform's terms when the application was approved, so the
    // consent prompt is answered here instead of shown.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (!firstParty.has(ctx.oidc.client.clientId)) return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile email');
      await grant.save();
      return grant;
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    ttl: {
      AccessToken: 3600,
      Session: 8 * 3600,
      Interaction: 600,
      Grant: 8 * 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html lang="ja"><meta charset="utf-8"><title>Error</title>
<h1>エラー / Error</h1><p>${escapeHtml(out.error)}: ${escapeHtml(out.error_description || '')}</p></html>`;
    },
  });
  provider.proxy = false;
  return provider;
}

// The interaction pages, in front of the provider's own routes.
function interactionHandler(provider, users) {
  const route = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/;
  return async (req, res) => {
    const url = new URL(req.url, 'http://idp');
    const m = route.exec(url.pathname);
    if (!m) return false;
    const [, uid, action] = m;
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      send(res, 400, '<p>このログイン画面は期限切れです。もう一度アクセスしてください。<br>This login page has expired; start again from the hub.</p>');
      return true;
    }
    if (details.uid !== uid) {
      send(res, 400, '<p>Invalid interaction / 無効な操作です</p>');
      return true;
    }
    const clientId = details.params.client_id;

    if (!action && req.method === 'GET') {
      if (details.prompt.name === 'login') {
        send(res, 200, loginPage({ uid, clientId }));
      } else {
        // consent for a client that is not first-party: not offered by the demo
        await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'this provider only serves the platform',
        });
      }
      return true;
    }
    if (action === '/abort') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'login cancelled' });
      return true;
    }
    if (action === '/login' && req.method === 'POST') {
      let form;
      try {
        form = await readForm(req);
      } catch {
        send(res, 413, '<p>Request too large / リクエストが大きすぎます</p>');
        return true;
      }
      const username = (form.get('username') || '').trim();
      const password = form.get('password') || '';
      for (const [field, value, ja] of [['user name', username, 'ユーザー名'], ['password', password, 'パスワード']]) {
        if (!value) {
          send(res, 400, loginPage({ uid, clientId, username, message: `${ja}を入力してください / Enter your ${field}` }));
          return true;
        }
      }
      const user = users.get(username);
      if (!user || !sameSecret(password, user.password)) {
        console.log(`login refused for ${JSON.stringify(username)}`);
        send(res, 401, loginPage({
          uid, clientId, username, message: 'ユーザー名またはパスワードが違います / Wrong user name or password',
        }));
        return true;
      }
      console.log(`login ${username}`);
      await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
      return true;
    }
    send(res, 405, '<p>Method not allowed</p>', { allow: 'GET, POST' });
    return true;
  };
}

// ---------------------------------------------------------------------------

function main() {
  const host = process.env.VISITING_IDP_HOST || '127.0.0.1';
  const port = Number(process.env.VISITING_IDP_PORT || 9000);
  const issuer = process.env.VISITING_IDP_ISSUER || `http://${host}:${port}`;
  const usersFile = process.env.VISITING_IDP_USERS || path.join(REPO_ROOT, 'policies', 'demo', 'users.yaml');
  const users = readUsers(usersFile);
  const clients = readClients(process.env.VISITING_IDP_CLIENTS, 'http://127.0.0.1:8000/hub/oauth_callback');
  const provider = buildProvider({ issuer, users, clients });
  const interactions = interactionHandler(provider, users);
  const callback = provider.callback();

  const server = http.createServer(async (req, res) => {
    try {
      if (await interactions(req, res)) return;
      callback(req, res);
    } catch (e) {
      console.error(e);
      if (!res.headersSent) send(res, 500, '<p>Internal error / 内部エラー</p>');
    }
  });
  server.listen(port, host, () => {
    console.log(`visiting-idp listening on ${issuer} (${users.size} demo accounts, ${clients.length} clients)`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

try {
  main();
} catch (e) {
  if (e instanceof SetupError) {
    console.error(`visiting-idp: ${e.message}`);
    process.exit(2);
  }
  throw e;
}
