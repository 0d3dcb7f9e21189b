// npm oidc-provider as the token endpoint the benchmark compares authbridge with.
//
// Usage: node oidc_provider_server.mjs CONFIG.json   (next to node_modules/ holding oidc-provider)
//
// CONFIG.json: {"port": 0, "readyFile": "...", "clientId": "...", "clientSecret": "...",
//               "resource": "https://api.bench.test", "scope": "items:read items:write",
//               "alg": "RS256", "accessTokenTTL": 600}
//
// One Node process, oidc-provider's default in-memory adapter, one confidential client allowed
// client_credentials (client_secret_basic), and one resource server whose access tokens are
// RFC 9068 JWTs (resource indicators: accessTokenFormat "jwt") signed with a fresh RSA-2048 key.
// Nothing is logged per request: the server is measured, not its logging. Writes the ready file
// ({issuer, port, pid}) once listening.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const alg = cfg.alg ?? 'RS256';

function signingKey() {
  if (alg === 'RS256') {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    return { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg, kid: 'bench-rsa' };
  }
  if (alg === 'ES256') {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg, kid: 'bench-ec' };
  }
  throw new Error(`unsupported alg ${alg}`);
}

const resourceInfo = {
  scope: cfg.scope,
  audience: cfg.resource,
  accessTokenTTL: cfg.accessTokenTTL ?? 600,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg } },
};

const configuration = {
  clients: [
    {
      client_id: cfg.clientId,
      client_secret: cfg.clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey()] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => cfg.resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== cfg.resource) {
          throw new Error('unknown resource');
        }
        return resourceInfo;
      },
    },
  },
};

let callback;
const server = createServer((req, res) => {
  if (!callback) {
    res.statusCode = 503;
    res.end('starting\n');
    return;
  }
  callback(req, res);
});

server.listen(cfg.port ?? 0, HOST, () => {
  const { port } = server.address();
  const issuer = `http://${HOST}:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  callback = provider.callback();
  const ready = JSON.stringify({ issuer, port, pid: process.pid });
  writeFileSync(`${cfg.readyFile}.tmp`, ready);
  renameSync(`${cfg.readyFile}.tmp`, cfg.readyFile);
});

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) {
    shutdown();
  }
}, 1000).unref();
