// Drives Portcullis with openid-client: discovery from the RFC 8414
// metadata, then the client_credentials grant with client_secret_basic.
// TLS trusts the server's CA through NODE_EXTRA_CA_CERTS, which the Rust
// test sets. Exits non-zero on the first failed check.

import * as client from 'openid-client';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`environment variable ${name} is missing`);
  }
  return value;
}

function check(condition, message) {
  if (!condition) {
    throw new Error(`check failed: ${message}`);
  }
}

const issuer = required('PORTCULLIS_ISSUER');
const resource = required('PORTCULLIS_RESOURCE');
const clientId = required('PORTCULLIS_BASIC_CLIENT_ID');
const clientSecret = required('PORTCULLIS_BASIC_CLIENT_SECRET');

const config = await client.discovery(
  new URL(issuer),
  clientId,
  undefined,
  client.ClientSecretBasic(clientSecret),
  { algorithm: 'oauth2' },
);

const metadata = config.serverMetadata();
check(metadata.issuer === issuer, `issuer ${metadata.issuer}`);
check(
  metadata.token_endpoint === `${issuer}/oauth/token`,
  `token_endpoint ${metadata.token_endpoint}`,
);
check(
  metadata.grant_types_supported?.includes('client_credentials'),
  `grant_types_supported ${metadata.grant_types_supported}`,
);
check(
  metadata.code_challenge_methods_supported?.includes('S256'),
  `code_challenge_methods_supported ${metadata.code_challenge_methods_supported}`,
);

const tokens = await client.clientCredentialsGrant(config, {
  scope: 'orders:read',
  resource,
});
check(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
check(typeof tokens.access_token === 'string', 'no access_token');
check(tokens.scope === 'orders:read', `scope ${tokens.scope}`);
check(tokens.expiresIn() > 0, `expires_in ${tokens.expires_in}`);

// A scope beyond the client's must fail with the RFC 6749 error code.
let rejected;
try {
  await client.clientCredentialsGrant(config, { scope: 'orders:write', resource });
} catch (error) {
  rejected = error;
}
check(rejected?.error === 'invalid_scope', `scope escalation gave ${rejected?.error ?? 'a token'}`);

console.log('openid-client: discovery and client_credentials passed');
