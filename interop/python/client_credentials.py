"""Drive Portcullis with authlib and PyJWT: the client_credentials grant with
client_secret_basic and client_secret_post, validation of the access token
against the published JWKS, then introspection and revocation.

Exits non-zero on the first failed check."""

import jwt
from authlib.integrations.requests_client import OAuth2Session

from portcullis_env import (
    CA_FILE,
    INTROSPECT_URL,
    ISSUER,
    JWKS_URL,
    RESOURCE,
    REVOKE_URL,
    TOKEN_URL,
    check,
    require,
    ssl_context,
)

# The algorithms Portcullis can sign with. Validation pins this list rather
# than trusting the token header.
ALGORITHMS = ["ES256", "RS256", "EdDSA"]


def session(client_id, client_secret, method):
    """Return an authlib session that authenticates with `method` at every
    endpoint and trusts only the server's CA."""
    client = OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        scope="orders:read",
    )
    client.verify = CA_FILE
    # Otherwise requests lets REQUESTS_CA_BUNDLE and proxy variables from
    # the environment override `verify` and reach past 127.0.0.1.
    client.trust_env = False
    return client


def fetch(client):
    token = client.fetch_token(
        TOKEN_URL, grant_type="client_credentials", resource=RESOURCE
    )
    check(token.get("token_type", "").lower() == "bearer", f"token_type: {token}")
    check(token.get("scope") == "orders:read", f"scope: {token}")
    check(isinstance(token.get("expires_in"), int), f"expires_in: {token}")
    check("refresh_token" not in token, "client_credentials issued a refresh token")
    return token["access_token"]


def validate(access_token, client_id):
    """Validate the access token with PyJWT and the published JWKS, as a
    resource server would (RFC 9068 §4)."""
    header = jwt.get_unverified_header(access_token)
    check(header.get("typ") == "at+jwt", f"typ is {header.get('typ')!r}")
    check(header.get("alg") in ALGORITHMS, f"alg is {header.get('alg')!r}")

    keys = jwt.PyJWKClient(JWKS_URL, ssl_context=ssl_context())
    signing_key = keys.get_signing_key_from_jwt(access_token)
    claims = jwt.decode(
        access_token,
        signing_key.key,
        algorithms=ALGORITHMS,
        audience=RESOURCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    check(claims.get("client_id") == client_id, f"client_id claim: {claims}")
    check(claims.get("sub") == client_id, f"sub claim: {claims}")
    check(claims.get("scope") == "orders:read", f"scope claim: {claims}")

    # The same validation must fail for another audience and for a token
    # with one changed signature byte.
    try:
        jwt.decode(
            access_token,
            signing_key.key,
            algorithms=ALGORITHMS,
            audience="https://other.example.test",
            issuer=ISSUER,
        )
        check(False, "PyJWT accepted the token for another audience")
    except jwt.InvalidAudienceError:
        pass
    head, payload, signature = access_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    try:
        jwt.decode(
            f"{head}.{payload}.{flipped}",
            signing_key.key,
            algorithms=ALGORITHMS,
            audience=RESOURCE,
            issuer=ISSUER,
        )
        check(False, "PyJWT accepted a token with a changed signature")
    except jwt.InvalidSignatureError:
        pass


def introspect(client, access_token):
    response = client.introspect_token(INTROSPECT_URL, token=access_token)
    check(response.status_code == 200, f"introspection status {response.status_code}")
    return response.json()


def revoke_then_introspect(client, access_token, client_id):
    answer = introspect(client, access_token)
    check(answer.get("active") is True, f"fresh token not active: {answer}")
    check(answer.get("client_id") == client_id, f"introspected client_id: {answer}")
    check(answer.get("aud") == RESOURCE, f"introspected aud: {answer}")

    response = client.revoke_token(
        REVOKE_URL, token=access_token, token_type_hint="access_token"
    )
    check(response.status_code == 200, f"revocation status {response.status_code}")

    answer = introspect(client, access_token)
    check(answer == {"active": False}, f"revoked token introspected as {answer}")


def main():
    for prefix, method in [
        ("PORTCULLIS_BASIC_CLIENT", "client_secret_basic"),
        ("PORTCULLIS_POST_CLIENT", "client_secret_post"),
    ]:
        client_id = require(f"{prefix}_ID")
        client = session(client_id, require(f"{prefix}_SECRET"), method)
        access_token = fetch(client)
        validate(access_token, client_id)
        revoke_then_introspect(client, access_token, client_id)
        print(f"{method}: token issued, validated, introspected and revoked")


if __name__ == "__main__":
    main()
