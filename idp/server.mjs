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
//   VISITING_IDP_USERS (policies/demo/users.yaml beside this folder),
//   VISITING_IDP_CLIENTS (JSON file: [{client_id, client_secret, redirect_uris,
//     post_logout_redirect_uris?, token_endpoint_auth_method?}]; default: one
//     client "visiting-hub" with VISITING_IDP_DEFAULT_SECRET for the demo hub),
//   VISITING_IDP_JWKS (JSON JWKS with private keys; default: a new RSA key),
//   VISITING_IDP_COOKIE_KEYS (comma-separated; default: random at start).
//
// All state (sessions, codes, tokens) is in memory on purpose: the signing and
// cookie keys are new at every start unless configured, so a restart logs
// everyone out either way.

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

function readText(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new SetupError(`${file}: ${e.code === 'ENOENT' ? 'file not found' : e.message}`);
  }
}

function readUsers(file) {
  let doc;
  try {
    doc = YAML.parse(readText(file), { uniqueKeys: true });
  } catch (e) {
    if (e instanceof SetupError) throw e;
    throw new SetupError(`${file}: cannot be read as YAML: ${e.message.split('\n')[0]}`);
  }
  if (!doc || !Array.isArray(doc.users)) {
    throw new SetupError(`${file}: users: missing field (a list of accounts)`);
  }
  const users = new Map();
  doc.users.forEach((u, i) => {
    for (const field of ['username', 'password']) {
      if (u?.[field] === undefined || u[field] === null || u[field] === '') {
        throw new SetupError(`${file}: users[${i}].${field}: missing field`);
      }
    }
    // YAML reads `password: 1234` as a number; a quiet String() would hide the typo-prone case
    for (const field of ['username', 'password', 'name', 'email']) {
      if (u[field] !== undefined && typeof u[field] !== 'string') {
        throw new SetupError(`${file}: users[${i}].${field}: must be a string (quote it)`);
      }
    }
    if (users.has(u.username)) {
      throw new SetupError(`${file}: users[${i}].username: user '${u.username}' is listed twice`);
    }
    users.set(u.username, u);
  });
  return users;
}

function readClients(file) {
  if (!file) {
    return [{
      client_id: 'visiting-hub',
      client_secret: process.env.VISITING_IDP_DEFAULT_SECRET || 'visiting-demo-secret',
      redirect_uris: ['http://127.0.0.1:8000/hub/oauth_callback'],
      post_logout_redirect_uris: ['http://127.0.0.1:8000/hub/'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    }];
  }
  let clients;
  try {
    clients = JSON.parse(readText(file));
  } catch (e) {
    if (e instanceof SetupError) throw e;
    throw new SetupError(`${file}: not JSON: ${e.message}`);
  }
  if (!Array.isArray(clients) || clients.length === 0) {
    throw new SetupError(`${file}: expected a non-empty list of clients`);
  }
  const seen = new Set();
  return clients.map((c, i) => {
    for (const field of ['client_id', 'client_secret', 'redirect_uris']) {
      if (!c?.[field]) throw new SetupError(`${file}: [${i}].${field}: missing field`);
    }
    if (seen.has(c.client_id)) {
      throw new SetupError(`${file}: [${i}].client_id: client '${c.client_id}' is listed twice`);
    }
    seen.add(c.client_id);
    // The registered auth method only decides what discovery advertises for the
    // client: oidc-provider accepts client_secret_basic and client_secret_post
    // alike for a client registered with either.
    return {
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    };
  });
}

function readJwks(file) {
  if (!file) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const kid = `demo-${randomBytes(4).toString('hex')}`;
    return { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid }] };
  }
  let jwks;
  try {
    jwks = JSON.parse(readText(file));
  } catch (e) {
    if (e instanceof SetupError) throw e;
    throw new SetupError(`${file}: not JSON: ${e.message}`);
  }
  if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0 || !jwks.keys.every((k) => k?.d)) {
    throw new SetupError(`${file}: expected {"keys": [...]} with private keys (each with "d")`);
  }
  return jwks;
}

function listenAddress() {
  const host = process.env.VISITING_IDP_HOST || '127.0.0.1';
  const raw = process.env.VISITING_IDP_PORT || '9000';
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SetupError(`VISITING_IDP_PORT: '${raw}' is not a port number`);
  }
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  return { host, port, issuer: process.env.VISITING_IDP_ISSUER || `http://${hostInUrl}:${port}` };
}

// ---------------------------------------------------------------------------
// pages (all local: no web fonts or scripts, the demo runs without internet)

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!doctype html>
<html lang="ja">
<head><meta charset="utf-8"><title>${title} — Visiting workspace (demo)</title>
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
<div class="demo"><strong>Demo accounts only — デモ専用</strong><br>
<small>This is the demo identity provider. Its passwords are public; never use it for real data.
これはデモ用の認証サーバーです。パスワードは公開されています。実データには使用しないでください。</small></div>
<h1>${title}</h1>
${body}
</body></html>`;
}

function loginPage({ uid, clientId, message = '', username = '' }) {
  return page('ログイン / Log in', `${message ? `<div class="error" role="alert">${escapeHtml(message)}</div>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label for="username">ユーザー名 / User name</label>
  <input id="username" name="username" value="${escapeHtml(username)}" autofocus>
  <label for="password">パスワード / Password</label>
  <input id="password" name="password" type="password">
  <button type="submit">ログイン / Log in</button>
</form>
<p><small>Signing in to / ログイン先: ${escapeHtml(clientId)}</small></p>`);
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

function buildProvider({ issuer, users, clients, jwks }) {
  const cookieKeys = process.env.VISITING_IDP_COOKIE_KEYS
    ? process.env.VISITING_IDP_COOKIE_KEYS.split(',')
    : [randomBytes(32).toString('hex')];

  const provider = new Provider(issuer, {
    clients,
    jwks,
    // Cookies get `secure` only when a request arrives over https (ctx.secure);
    // with an http:// loopback issuer and `proxy` off they stay plain, as they must.
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // the ID token carries the profile claims too, not only userinfo
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page('ログアウト / Log out', `${form}
<p>デモ認証サーバーからログアウトしますか？<br>Log out of the demo identity provider?</p>
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">ログアウト / Log out</button>
<button type="submit" form="op.logoutForm">キャンセル / Stay logged in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('ログアウトしました / Logged out',
            '<p>デモ認証サーバーからログアウトしました。<br>You are logged out of the demo identity provider.</p>');
        },
      },
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
            ...(u.name ? { name: u.name } : {}),
            ...(u.email ? { email: u.email, email_verified: true } : {}),
          };
        },
      };
    },
    // Every registered client is the platform's own (the hub), so the consent
    // prompt is answered here instead of shown: the person agreed to the
    // platform's terms when their application was approved.
    async loadExistingGrant(ctx) {
      const { client, session } = ctx.oidc;
      if (!session.accountId) return undefined;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      const grant = (grantId && await ctx.oidc.provider.Grant.find(grantId))
        || new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      // a grant found in the session may predate a request for more scopes
      grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
      await grant.save();
      return grant;
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 8 * 3600,
      Session: 8 * 3600,
      Interaction: 600,
      Grant: 8 * 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('エラー / Error',
        `<div class="error">${escapeHtml(out.error)}: ${escapeHtml(out.error_description || '')}</div>`);
    },
  });
  // X-Forwarded-* must not be trusted: nothing sits in front of this provider
  provider.proxy = false;
  return provider;
}

// The interaction pages, in front of the provider's own routes.
function interactionHandler(provider, users) {
  const route = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/;
  return async (req, res) => {
    const m = route.exec(new URL(req.url, 'http://idp').pathname);
    if (!m) return false;
    const [, uid, action] = m;
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      send(res, 400, page('期限切れ / Expired',
        '<p>このログイン画面は期限切れです。ハブからもう一度アクセスしてください。<br>This login page has expired; start again from the hub.</p>'));
      return true;
    }
    if (details.uid !== uid) {
      send(res, 400, page('エラー / Error', '<p>無効な操作です / Invalid interaction</p>'));
      return true;
    }
    const clientId = details.params.client_id;

    if (!action && req.method === 'GET') {
      if (details.prompt.name === 'login') {
        send(res, 200, loginPage({ uid, clientId }));
      } else {
        // loadExistingGrant answers consent for every client, so this is not reached
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
        send(res, 413, page('エラー / Error', '<p>リクエストが大きすぎます / Request too large</p>'));
        return true;
      }
      const username = (form.get('username') || '').trim();
      const password = form.get('password') || '';
      for (const [field, value, ja] of [['user name', username, 'ユーザー名'], ['password', password, 'パスワード']]) {
        if (!value) {
          send(res, 400, loginPage({ uid, clientId, username, message: `Enter your ${field} / ${ja}を入力してください` }));
          return true;
        }
      }
      const user = users.get(username);
      if (!user || !sameSecret(password, user.password)) {
        console.log(`login refused for ${JSON.stringify(username)}`);
        send(res, 401, loginPage({
          uid, clientId, username, message: 'Wrong user name or password / ユーザー名またはパスワードが違います',
        }));
        return true;
      }
      console.log(`login ${username}`);
      await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
      return true;
    }
    send(res, 405, page('エラー / Error', '<p>Method not allowed</p>'), { allow: 'GET, POST' });
    return true;
  };
}

// ---------------------------------------------------------------------------

async function main() {
  const { host, port, issuer } = listenAddress();
  const usersFile = process.env.VISITING_IDP_USERS || path.join(REPO_ROOT, 'policies', 'demo', 'users.yaml');
  const users = readUsers(usersFile);
  const clientsFile = process.env.VISITING_IDP_CLIENTS;
  const clients = readClients(clientsFile);
  const jwksFile = process.env.VISITING_IDP_JWKS;
  const jwks = readJwks(jwksFile);
  let provider;
  try {
    provider = buildProvider({ issuer, users, clients, jwks });
  } catch (e) {
    // with the rest checked above, the keys are what the provider can still reject
    throw new SetupError(`${jwksFile ? `${jwksFile}: ` : ''}cannot configure the provider: ${e.message}`);
  }
  // oidc-provider checks client metadata only when a client is first used;
  // a bad redirect URI should stop the start instead of the first login
  for (const [i, c] of clients.entries()) {
    try {
      await provider.Client.find(c.client_id);
    } catch (e) {
      throw new SetupError(`${clientsFile || 'default client'}: [${i}]: ${e.error_description || e.message}`);
    }
  }

  const interactions = interactionHandler(provider, users);
  const callback = provider.callback();
  const server = http.createServer(async (req, res) => {
    try {
      if (await interactions(req, res)) return;
      callback(req, res);
    } catch (e) {
      console.error(e);
      if (!res.headersSent) send(res, 500, page('エラー / Error', '<p>内部エラー / Internal error</p>'));
    }
  });
  server.on('error', (e) => {
    console.error(`visiting-idp: cannot listen on ${host}:${port}: ${e.code || e.message}`);
    process.exit(1);
  });
  server.listen(port, host, () => {
    console.log(`visiting-idp: ${users.size} demo accounts from ${usersFile}, ${clients.length} client(s)`);
    console.log(`visiting-idp listening on ${issuer}`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    // a browser's keep-alive connection must not hold the shutdown open
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  if (e instanceof SetupError) {
    console.error(`visiting-idp: ${e.message}`);
  } else {
    console.error(e);
  }
  process.exit(2);
});
