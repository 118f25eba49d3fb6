// The npm oidc-provider peer of bench/oauth.sh: one confidential client for
// the client_credentials grant, authenticated with client_secret_basic, whose
// tokens are JWT access tokens (RFC 9068) for one resource server. It serves
// HTTPS on 127.0.0.1 with the certificate that Portcullis created, so both
// token endpoints do the same TLS work.
//
// oidc-provider is pinned to 8.8.1, the last release that runs on Node.js 20
// without warning: 9.x warns at start on any Node.js older than 22.
//
// Settings (environment variables, all required):
//   OIDC_PORT           port to listen on, on 127.0.0.1
//   OIDC_ALG            access-token signing algorithm: ES256 or RS256
//   OIDC_AUDIENCE       the resource server's identifier, the tokens' `aud`
//   OIDC_SCOPE          the one scope the client may request
//   OIDC_CLIENT_ID      the client's id
//   OIDC_CLIENT_SECRET_FILE  file with the client's secret on its first line
//   TLS_CERT, TLS_KEY   PEM files of the server certificate and its key
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const SUPPORTED_ALGORITHMS = ['ES256', 'RS256'];

// The access-token lifetime of Portcullis's default, 15 minutes.
const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`error: the environment variable ${name} is missing`);
    process.exit(2);
  }
  return value;
}

// Generates a private signing key as a JWK, with `kid`, `use` and `alg` set
// so that the provider picks it by algorithm.
async function signingJwk(alg) {
  const options = alg === 'RS256' ? { modulusLength: 2048, extractable: true } : { extractable: true };
  const { privateKey } = await generateKeyPair(alg, options);
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `bench-${alg.toLowerCase()}`, use: 'sig', alg };
}

const port = Number(requireEnv('OIDC_PORT'));
const alg = requireEnv('OIDC_ALG');
const audience = requireEnv('OIDC_AUDIENCE');
const scope = requireEnv('OIDC_SCOPE');
const clientId = requireEnv('OIDC_CLIENT_ID');
const clientSecret = readFileSync(requireEnv('OIDC_CLIENT_SECRET_FILE'), 'utf8').split('\n')[0];
const tls = { cert: readFileSync(requireEnv('TLS_CERT')), key: readFileSync(requireEnv('TLS_KEY')) };
if (!SUPPORTED_ALGORITHMS.includes(alg)) {
  console.error(`error: OIDC_ALG is ${alg}; expected one of ${SUPPORTED_ALGORITHMS.join(', ')}`);
  process.exit(2);
}

const issuer = `https://127.0.0.1:${port}`;
// Both key types are in the key set, because the provider's client defaults
// (ID tokens signed with RS256) need an RSA key even though this benchmark
// issues no ID tokens. Access tokens are signed with OIDC_ALG only.
const keys = await Promise.all(SUPPORTED_ALGORITHMS.map(signingJwk));

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    },
  ],
  jwks: { keys },
  // The client_credentials grant sets no cookies; a random key only stops
  // the provider's start-up warning.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: [scope],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // A request without `resource` gets the one resource server, as a
      // request to Portcullis without `resource` is rejected; the benchmark
      // always sends it.
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (resourceIndicator !== audience) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope,
          audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: ACCESS_TOKEN_TTL_SECONDS,
          jwt: { sign: { alg } },
        };
      },
    },
  },
});

// The provider emits the errors it returns to clients (invalid_client and the
// like) as events and logs none of them. server_error is the one that points
// to a bug in this set-up, so it is logged.
provider.on('server_error', (ctx, error) => {
  console.error(`server_error at ${ctx.path}: ${error.stack ?? error}`);
});

const server = createServer(tls, provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}, access tokens signed with ${alg}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
