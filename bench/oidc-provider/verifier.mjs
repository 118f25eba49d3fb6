// The resource-server peer of the Portcullis gateway in bench/oauth.sh: an
// HTTPS server on 127.0.0.1 that checks the bearer JWT of every request with
// jose's jwtVerify against oidc-provider's JWKS and returns 200 {"ok":true}
// itself. It proxies nothing, unlike the gateway.
//
// The checks match the gateway's: signature by a key from the JWKS with the
// one expected algorithm, `typ` at+jwt, `iss`, `aud`, `exp`, `iat`, `sub`
// present, and the required scope in `scope`. createRemoteJWKSet fetches the
// JWKS on first use and keeps it, so no request after the first fetches it.
//
// Settings (environment variables, all required):
//   VERIFIER_PORT      port to listen on, on 127.0.0.1
//   VERIFIER_ISSUER    expected `iss`; the JWKS is read from ISSUER/jwks
//   VERIFIER_AUDIENCE  expected `aud`
//   VERIFIER_ALG       expected signing algorithm: ES256 or RS256
//   VERIFIER_SCOPE     scope each request needs
//   TLS_CERT, TLS_KEY  PEM files of the server certificate and its key
// The JWKS is fetched over HTTPS, so NODE_EXTRA_CA_CERTS must name the CA
// that issued oidc-provider's certificate.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import { createRemoteJWKSet, jwtVerify } from 'jose';

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`error: the environment variable ${name} is missing`);
    process.exit(2);
  }
  return value;
}

const port = Number(requireEnv('VERIFIER_PORT'));
const issuer = requireEnv('VERIFIER_ISSUER');
const audience = requireEnv('VERIFIER_AUDIENCE');
const alg = requireEnv('VERIFIER_ALG');
const scope = requireEnv('VERIFIER_SCOPE');
const tls = { cert: readFileSync(requireEnv('TLS_CERT')), key: readFileSync(requireEnv('TLS_KEY')) };

const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
const verifyOptions = {
  algorithms: [alg],
  typ: 'at+jwt',
  issuer,
  audience,
  requiredClaims: ['exp', 'iat', 'sub'],
};

function reply(response, status, body, headers = {}) {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(body);
}

// Rejected tokens are not logged: the benchmark sends only valid tokens, and
// wrk counts any rejection as a non-2xx response.
async function handle(request, response) {
  const authorization = request.headers.authorization ?? '';
  if (!authorization.startsWith('Bearer ')) {
    reply(response, 401, '{"error":"missing bearer token"}', { 'www-authenticate': 'Bearer' });
    return;
  }
  let payload;
  try {
    ({ payload } = await jwtVerify(authorization.slice('Bearer '.length), jwks, verifyOptions));
  } catch (error) {
    reply(response, 401, JSON.stringify({ error: error.code ?? 'invalid token' }), {
      'www-authenticate': 'Bearer error="invalid_token"',
    });
    return;
  }
  const granted = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
  if (!granted.includes(scope)) {
    reply(response, 403, '{"error":"insufficient_scope"}', {
      'www-authenticate': `Bearer error="insufficient_scope", scope="${scope}"`,
    });
    return;
  }
  reply(response, 200, '{"ok":true}');
}

const server = createServer(tls, (request, response) => {
  // The body, if any, is read and dropped, so the connection stays usable.
  request.resume();
  handle(request, response).catch((error) => {
    console.error(`request failed: ${error.stack ?? error}`);
    if (!response.headersSent) {
      reply(response, 500, '{"error":"internal error"}');
    }
  });
});
server.listen(port, '127.0.0.1', () => {
  console.log(`verifier listening on https://127.0.0.1:${port}, tokens of ${issuer} (${alg})`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
