// Runs the real `oidc-provider` OpenID Provider on 127.0.0.1 for interop tests.
//
// Usage: node server.mjs CONFIG.json
//
// The script must sit next to a node_modules/ holding oidc-provider (ESM resolution ignores
// NODE_PATH), so the Python harness copies it into the npm install directory before starting it.
//
// CONFIG.json (written by tests/interop/op/__init__.py):
// {
//   "port": 0,                        // 0 = any free port; the chosen one is in the ready file
//   "readyFile": "/path/ready.json",  // written atomically once listening: {issuer, port, pid}
//   "jwks": {"keys": [private JWKs]}, // signing keys; see "Signing key selection" below
//   "cookieKeys": ["..."],            // optional, random when absent
//   "accessTokenTTL": 300,            // default access token lifetime (seconds)
//   "useGrantedResource": true,       // token request without `resource` uses the granted one
//   "defaultResource": null,          // resource used when a request names none
//   "resources": {                    // resource indicators (RFC 8707)
//     "https://api.example.test/jwt": {
//       "scope": "items:read items:write", "accessTokenFormat": "jwt",
//       "audience": "...", "accessTokenTTL": 300, "signingAlg": "RS256", "signingKid": null
//     }
//   },
//   "clients": [oidc-provider client metadata],
//   "corsOrigins": {"swagger-client": ["http://127.0.0.1:8000"]},  // browser origins allowed to
//                                     // call the token endpoint etc. as that client (exact match)
//   "users": {"alice": {"password": "wonderland", "claims": {"email": "..."}}},
//   "providerConfiguration": {}       // JSON deep-merged over the configuration built here
// }
//
// Signing key selection (oidc-provider 9.x, lib/helpers/keystore.js): for an alg it keeps the keys
// whose kty/crv fit (and whose `alg`/`use`/`key_ops`, when present, allow it), then stable-sorts
// keys that carry explicit `alg` and `use` first. So among equally described keys the FIRST one
// in jwks.keys signs. A resource may pin a key with "signingKid". Every key is published at /jwks.

import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node server.mjs CONFIG.json');
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(configPath, 'utf8'));
const users = cfg.users ?? {};
const resources = cfg.resources ?? {};
const defaultTTL = cfg.accessTokenTTL ?? 300;
const corsOrigins = cfg.corsOrigins ?? {};

function log(...parts) {
  console.log(new Date().toISOString(), ...parts);
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function deepMerge(target, source) {
  for (const [key, value] of Object.entries(source ?? {})) {
    if (isPlainObject(value) && isPlainObject(target[key])) {
      deepMerge(target[key], value);
    } else {
      target[key] = value;
    }
  }
  return target;
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function resourceServerInfo(indicator) {
  const rs = resources[indicator];
  if (!rs) {
    throw new errors.InvalidTarget(`unknown resource indicator ${indicator}`);
  }
  const format = rs.accessTokenFormat ?? 'jwt';
  const info = {
    scope: rs.scope ?? '',
    audience: rs.audience ?? indicator,
    accessTokenTTL: rs.accessTokenTTL ?? defaultTTL,
    accessTokenFormat: format,
  };
  if (format === 'jwt') {
    info.jwt = { sign: { alg: rs.signingAlg ?? 'RS256' } };
    if (rs.signingKid) {
      info.jwt.sign.kid = rs.signingKid;
    }
  }
  return info;
}

function buildConfiguration() {
  const configuration = {
    clients: cfg.clients ?? [],
    jwks: cfg.jwks,
    cookies: { keys: cfg.cookieKeys ?? [randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    pkce: { required: () => true },
    // Client-based CORS (token, userinfo, introspection, revocation): only the origins listed for
    // the client. The default would allow a public client's redirect URI origins, which for a
    // loopback URI registered without a port never match a browser origin that has one.
    clientBasedCORS: (_ctx, origin, client) => (
      (corsOrigins[client.clientId] ?? []).includes(origin)
    ),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? cfg.defaultResource ?? undefined,
        useGrantedResource: async () => cfg.useGrantedResource ?? true,
        getResourceServerInfo: async (_ctx, indicator) => resourceServerInfo(indicator),
      },
    },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Interaction: 3600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount: async (_ctx, sub) => {
      const user = users[sub];
      if (!user) {
        return undefined;
      }
      return {
        accountId: sub,
        claims: async () => ({ ...(user.claims ?? {}), sub }),
      };
    },
  };
  return deepMerge(configuration, cfg.providerConfiguration);
}

// ---------------------------------------------------------------------------------------------
// Interaction routes: a login form with fixed test users and a consent form. Plain HTML forms, so
// both an HTTP client (posting the form fields) and a real browser can drive them.

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>
`;
}

function loginPage(uid, clientId, error) {
  const message = error ? `<p id="error" role="alert">${escapeHtml(error)}</p>` : '';
  return page('Sign in', `${message}
<p>Client: <code>${escapeHtml(clientId)}</code></p>
<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Username <input type="text" name="login" id="login-username" autofocus></label>
  <label>Password <input type="password" name="password" id="login-password"></label>
  <button type="submit" id="login-submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit" id="abort-submit">Cancel</button>
</form>`);
}

function consentPage(uid, clientId, details) {
  const items = [];
  for (const scope of details.missingOIDCScope ?? []) {
    items.push(`<li>openid scope <code>${escapeHtml(scope)}</code></li>`);
  }
  for (const claim of details.missingOIDCClaims ?? []) {
    items.push(`<li>claim <code>${escapeHtml(claim)}</code></li>`);
  }
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    items.push(`<li>resource <code>${escapeHtml(indicator)}</code>: <code>${escapeHtml(scopes.join(' '))}</code></li>`);
  }
  return page('Authorize', `<p>Client <code>${escapeHtml(clientId)}</code> requests:</p>
<ul>${items.join('')}</ul>
<form id="consent" method="post" action="/interaction/${escapeHtml(uid)}/confirm">
  <button type="submit" id="consent-submit">Allow</button>
</form>
<form id="abort" method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit" id="abort-submit">Deny</button>
</form>`);
}

function send(res, status, contentType, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(provider, details) {
  const { prompt, params, session } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
  } else {
    grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  }
  const missing = prompt.details;
  if (missing.missingOIDCScope) {
    grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  }
  if (missing.missingOIDCClaims) {
    grant.addOIDCClaims(missing.missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return details.grantId ? {} : { grantId };
}

async function handleInteraction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    throw new errors.SessionNotFound('interaction uid mismatch');
  }
  const { prompt, params } = details;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') {
      send(res, 200, 'text/html; charset=utf-8', loginPage(uid, params.client_id));
    } else if (prompt.name === 'consent') {
      send(res, 200, 'text/html; charset=utf-8', consentPage(uid, params.client_id, prompt.details));
    } else {
      send(res, 501, 'text/plain', `unsupported prompt ${prompt.name}\n`);
    }
    return;
  }
  if (req.method !== 'POST' || !action) {
    send(res, 405, 'text/plain', 'method not allowed\n');
    return;
  }

  const form = await readForm(req);
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'end-user aborted interaction',
    }, { mergeWithLastSubmission: false });
  } else if (action === 'login') {
    if (prompt.name !== 'login') {
      send(res, 400, 'text/plain', 'not a login prompt\n');
      return;
    }
    const login = form.get('login') ?? '';
    const user = Object.hasOwn(users, login) ? users[login] : undefined;
    if (!user || user.password !== form.get('password')) {
      log('login failed for', JSON.stringify(login));
      send(res, 401, 'text/html; charset=utf-8', loginPage(uid, params.client_id, 'Invalid username or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
  } else if (action === 'confirm') {
    if (prompt.name !== 'consent') {
      send(res, 400, 'text/plain', 'not a consent prompt\n');
      return;
    }
    const consent = await grantConsent(provider, details);
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  } else {
    send(res, 404, 'text/plain', 'not found\n');
  }
}

// ---------------------------------------------------------------------------------------------

let provider;
let providerCallback;
const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?\/?$/;

const server = createServer((req, res) => {
  const started = Date.now();
  res.on('finish', () => {
    log(req.method, req.url.split('?')[0], res.statusCode, `${Date.now() - started}ms`);
  });
  if (!providerCallback) {
    send(res, 503, 'text/plain', 'starting\n');
    return;
  }
  const { pathname } = new URL(req.url, provider.issuer);
  const match = INTERACTION_PATH.exec(pathname);
  if (!match) {
    providerCallback(req, res);
    return;
  }
  handleInteraction(provider, req, res, match[1], match[2]).catch((err) => {
    log('interaction error', err);
    if (!res.headersSent) {
      const status = err instanceof errors.OIDCProviderError ? err.statusCode ?? 400 : 500;
      send(res, status, 'text/plain', `${err.name}: ${err.message}\n`);
    }
  });
});

server.listen(cfg.port ?? 0, HOST, () => {
  const { port } = server.address();
  const issuer = `http://${HOST}:${port}`;
  provider = new Provider(issuer, buildConfiguration());
  provider.on('server_error', (_ctx, err) => log('server_error', err));
  provider.on('grant.error', (_ctx, err) => log('grant.error', err.name, err.message, err.error_description ?? ''));
  provider.on('authorization.error', (_ctx, err) => log('authorization.error', err.name, err.message, err.error_description ?? ''));
  providerCallback = provider.callback();

  const ready = JSON.stringify({ issuer, port, pid: process.pid });
  if (cfg.readyFile) {
    writeFileSync(`${cfg.readyFile}.tmp`, ready);
    renameSync(`${cfg.readyFile}.tmp`, cfg.readyFile);
  }
  log('ready', ready);
});

function shutdown(signal) {
  log('shutting down on', signal);
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// Exit when the test process that started us is gone (we get re-parented), so a crashed test run
// does not leave providers behind.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) {
    shutdown('parent exit');
  }
}, 1000).unref();
