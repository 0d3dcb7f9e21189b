// Verifies JWT access tokens with npm `jose` (panva): an independent validator for the interop
// tests of the app's own authorization server.
//
// Usage: node jose_verify.mjs   (next to a node_modules/ holding jose; ESM ignores NODE_PATH)
//
// Reads one JSON request per line on stdin and writes one JSON answer per line on stdout:
//   {"id": 1, "token": "...", "jwks_uri": "http://127.0.0.1:PORT/oauth/jwks",
//    "issuer": "...", "audience": "...", "typ": "at+jwt", "algorithms": ["ES256"],
//    "cooldown_ms": 0}
// ->
//   {"id": 1, "ok": true, "protectedHeader": {...}, "payload": {...}, "kids": [...]}
//   {"id": 1, "ok": false, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "name": "...",
//    "message": "...", "kids": [...]}
//
// One remote key set is kept per (jwks_uri, cooldown_ms) for the life of the process, as a resource
// server keeps it: a token whose `kid` is not in the cached set makes jose fetch the JWKS again
// (once its cooldown has passed). `kids` lists the key ids the cached set holds after the call.

import { createInterface } from 'node:readline';

import { createRemoteJWKSet, jwtVerify } from 'jose';

const keySets = new Map();

function keySet(jwksUri, cooldownMs) {
  const key = `${cooldownMs}|${jwksUri}`;
  let found = keySets.get(key);
  if (!found) {
    const options = cooldownMs === undefined ? {} : { cooldownDuration: cooldownMs };
    found = createRemoteJWKSet(new URL(jwksUri), options);
    keySets.set(key, found);
  }
  return found;
}

function cachedKids(jwks) {
  const cached = typeof jwks.jwks === 'function' ? jwks.jwks() : undefined;
  return (cached?.keys ?? []).map((k) => k.kid ?? null);
}

async function answer(request) {
  const jwks = keySet(request.jwks_uri, request.cooldown_ms);
  const options = { issuer: request.issuer, audience: request.audience };
  if (request.typ) {
    options.typ = request.typ;
  }
  if (request.algorithms) {
    options.algorithms = request.algorithms;
  }
  try {
    const { payload, protectedHeader } = await jwtVerify(request.token, jwks, options);
    return { id: request.id, ok: true, payload, protectedHeader, kids: cachedKids(jwks) };
  } catch (err) {
    return {
      id: request.id,
      ok: false,
      code: err.code ?? null,
      name: err.name ?? null,
      message: String(err.message ?? err),
      kids: cachedKids(jwks),
    };
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) {
    continue;
  }
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, code: 'BAD_REQUEST', message: String(err) })}\n`);
    continue;
  }
  process.stdout.write(`${JSON.stringify(await answer(request))}\n`);
}
