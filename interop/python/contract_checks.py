"""A schemathesis check and hook for the admin API contract test.

Loaded with SCHEMATHESIS_HOOKS=contract_checks. The check tests what the
OpenAPI document cannot state, and the hook keeps the run's own operator
key usable. Every 4xx response must be an RFC 9457 problem with
the members Portcullis always writes. An `invalid_field` problem, and a
body error about a member of a JSON object, must name it in `field`.
"""

import json
import os
import uuid

import schemathesis

PROBLEM_JSON = "application/problem+json"
REQUIRED_MEMBERS = ("type", "title", "status", "detail", "code")

# The id of the operator key the run authenticates with. Generated requests
# may learn it from GET /admin/v1/operator-keys; revoking it, rotating it or
# capping its uses would turn every later response into a 401.
OPERATOR_KEY_ID = os.environ.get("PORTCULLIS_CONTRACT_KEY_ID", "")


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
    if code == "invalid_field":
        # A query parameter with an empty name is named by the empty string.
        empty_name_sent = "" in (case.query or {})
        if not isinstance(field, str) or not (field or empty_name_sent):
            raise AssertionError("an invalid_field problem does not name the field")
    # A JSON object body parses, so a body error is about one of its
    # members (unknown, missing or of the wrong type) and must name it.
    if code == "invalid_body" and isinstance(case.body, dict):
        # A member with an empty name is named by the empty string.
        if not isinstance(field, str) or not (field or "" in case.body):
            raise AssertionError(f"the body error does not name the member: {problem['detail']}")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Send a request aimed at the run's own operator key to an unknown key."""
    if OPERATOR_KEY_ID and case.path_parameters and case.path_parameters.get("id") == OPERATOR_KEY_ID:
        case.path_parameters["id"] = str(uuid.uuid4())
