"""A schemathesis check for the admin API contract test.

Loaded with SCHEMATHESIS_HOOKS=contract_checks. It checks what the OpenAPI
document cannot state. Every 4xx response must be an RFC 9457 problem with
the members Portcullis always writes. An `invalid_field` problem, and a
body error about a member of a JSON object, must name it in `field`.
"""

import json

import schemathesis

PROBLEM_JSON = "application/problem+json"
REQUIRED_MEMBERS = ("type", "title", "status", "detail", "code")


def header(response, name):
    """Return the first value of a response header, or an empty string."""
    for key, values in response.headers.items():
        if key.lower() == name and values:
            return values[0]
    return ""


@schemathesis.check
def client_errors_are_problems(ctx, response, case):
    """Fail unless a 4xx response is problem+json naming the invalid field."""
    if not 400 <= response.status_code < 500:
        return
    media_type = header(response, "content-type").split(";")[0].strip().lower()
    if media_type != PROBLEM_JSON:
        raise AssertionError(
            f"{response.status_code} has Content-Type {media_type!r}, expected {PROBLEM_JSON}"
        )
    try:
        problem = json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"the problem body is not JSON: {error}") from error
    if not isinstance(problem, dict):
        raise AssertionError("the problem body is not a JSON object")
    for member in REQUIRED_MEMBERS:
        if member not in problem:
            raise AssertionError(f"the problem has no {member!r} member")
    if problem["status"] != response.status_code:
        raise AssertionError(
            f"the problem's status {problem['status']} differs from {response.status_code}"
        )

    code = problem["code"]
    field = problem.get("field")
    if code == "invalid_field" and not (isinstance(field, str) and field):
        raise AssertionError("an invalid_field problem does not name the field")
    # A JSON object body parses, so a body error is about one of its
    # members (unknown, missing or of the wrong type) and must name it.
    if code == "invalid_body" and isinstance(case.body, dict) and not field:
        raise AssertionError(f"the body error does not name the member: {problem['detail']}")
