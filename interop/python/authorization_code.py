"""Drive Portcullis with authlib through the authorization code grant with
PKCE (S256): the sign-in and consent forms are submitted over HTTP as a
browser would, then the code is exchanged and the refresh token redeemed.

Exits non-zero on the first failed check."""

from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from portcullis_env import CA_FILE, ISSUER, RESOURCE, TOKEN_URL, check, require

AUTHORIZE_URL = f"{ISSUER}/oauth/authorize"


class HiddenInputs(HTMLParser):
    """Collect the hidden inputs of a page as a name-to-value dict."""

    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") == "hidden":
            self.fields[attributes.get("name")] = attributes.get("value") or ""


def hidden_inputs(html):
    parser = HiddenInputs()
    parser.feed(html)
    return parser.fields


class Browser:
    """A requests session that keeps cookies, follows no redirects and
    submits forms with the server's own Origin, as a browser does."""

    def __init__(self):
        self.http = requests.Session()
        self.http.verify = CA_FILE
        # Keep REQUESTS_CA_BUNDLE and proxy variables out of the way.
        self.http.trust_env = False

    def get(self, url):
        return self.http.get(urljoin(ISSUER, url), allow_redirects=False)

    def submit(self, fields):
        return self.http.post(
            AUTHORIZE_URL,
            data=fields,
            headers={"Origin": ISSUER},
            allow_redirects=False,
        )


def approve_in_browser(authorization_url, redirect_uri):
    """Sign in, approve the consent page when it is shown, and return the
    URL the browser is finally sent to."""
    browser = Browser()
    page = browser.get(authorization_url)
    check(page.status_code == 200, f"sign-in page status {page.status_code}")
    fields = hidden_inputs(page.text)
    check("csrf_token" in fields, f"sign-in form has no csrf_token: {fields.keys()}")
    fields["email"] = require("PORTCULLIS_USER_EMAIL")
    fields["password"] = require("PORTCULLIS_USER_PASSWORD")
    signed_in = browser.submit(fields)
    check(signed_in.status_code == 303, f"sign-in status {signed_in.status_code}")

    response = browser.get(signed_in.headers["Location"])
    if response.status_code == 200:
        fields = hidden_inputs(response.text)
        fields["action"] = "approve"
        response = browser.submit(fields)
    check(response.is_redirect, f"consent status {response.status_code}")
    location = response.headers["Location"]
    check(location.startswith(redirect_uri + "?"), f"redirected to {location}")
    return location


def main():
    client_id = require("PORTCULLIS_WEB_CLIENT_ID")
    redirect_uri = require("PORTCULLIS_REDIRECT_URI")
    client = OAuth2Session(
        client_id,
        require("PORTCULLIS_WEB_CLIENT_SECRET"),
        token_endpoint_auth_method="client_secret_basic",
        scope="orders:read",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    client.verify = CA_FILE
    client.trust_env = False

    verifier = generate_token(64)
    authorization_url, state = client.create_authorization_url(
        AUTHORIZE_URL, code_verifier=verifier, resource=RESOURCE
    )
    query = parse_qs(urlsplit(authorization_url).query)
    check(query.get("code_challenge_method") == ["S256"], f"authorize query {query}")

    callback = approve_in_browser(authorization_url, redirect_uri)
    returned = parse_qs(urlsplit(callback).query)
    # RFC 9207: the authorization response carries the issuer.
    check(returned.get("iss") == [ISSUER], f"iss in {callback}")
    check(returned.get("state") == [state], f"state in {callback}")

    token = client.fetch_token(
        TOKEN_URL,
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )
    check(token.get("scope") == "orders:read", f"code exchange gave {token}")
    check("refresh_token" in token, "no refresh_token from the code exchange")
    first_refresh = token["refresh_token"]

    refreshed = client.refresh_token(TOKEN_URL, refresh_token=first_refresh)
    check("access_token" in refreshed, f"refresh gave {refreshed}")
    check(
        refreshed.get("refresh_token") not in (None, first_refresh),
        "the refresh token did not rotate",
    )
    print("authorization code with PKCE, then refresh: passed")


if __name__ == "__main__":
    main()
