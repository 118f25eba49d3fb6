"""Read the settings that crates/portcullis/tests/interop.rs passes to the
interoperability scripts, and the helpers they share."""

import os
import ssl
import sys


def require(name):
    """Return the environment variable `name`, or exit with a message."""
    value = os.environ.get(name)
    if not value:
        sys.exit(f"error: environment variable {name} is missing")
    return value


ISSUER = require("PORTCULLIS_ISSUER")
CA_FILE = require("PORTCULLIS_CA_FILE")
RESOURCE = require("PORTCULLIS_RESOURCE")

TOKEN_URL = f"{ISSUER}/oauth/token"
INTROSPECT_URL = f"{ISSUER}/oauth/introspect"
REVOKE_URL = f"{ISSUER}/oauth/revoke"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"


def ssl_context():
    """Return a TLS context that trusts only the server's development CA."""
    return ssl.create_default_context(cafile=CA_FILE)


def check(condition, message):
    """Exit with `message` when `condition` is false.

    Unlike `assert`, this check also runs under `python -O`.
    """
    if not condition:
        sys.exit(f"check failed: {message}")
