"""Schemathesis hooks for scripts/conformance.sh (loaded through SCHEMATHESIS_HOOKS).

Two things the OpenAPI document states that a generic tester cannot act on alone:

- The cursor formats (`integration-list-cursor`, `audit-cursor`, `history-cursor`): a cursor
  is an opaque position issued as `nextCursor`. These strategies generate well-formed ones
  (base64url, no padding, of the JSON position the daemon encodes), so positive tests send
  cursors the document calls valid.
- Rules JSON Schema cannot state (a field against another field, or against the daemon's
  settings): an operation's response lists them as `x-cross-field-rules` (problem codes). A
  schema-valid request refused with exactly that status and only such codes is the documented
  allowance, so that one failure kind (ST202) is dropped for it, and nothing else is.
"""

import atexit
import base64
import collections
import json
import string
import sys

import schemathesis
from hypothesis import strategies as st


def _encode(position):
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A possible integration name: visible ASCII at both ends, 1-128 characters.
_names = st.text(alphabet=string.ascii_letters + string.digits + "-_. ", min_size=1, max_size=40).map(
    lambda s: "n" + s.strip() if not s.strip() else s.strip()
)
_uuids = st.uuids().map(str)
_i64 = st.integers(min_value=-(2**62), max_value=2**62)
# Microseconds within the times chrono can represent.
_micros = st.integers(min_value=-(2**55), max_value=2**55)

schemathesis.openapi.format(
    "integration-list-cursor", st.builds(lambda n, i: _encode({"n": n, "i": i}), _names, _uuids)
)
schemathesis.openapi.format("audit-cursor", _i64.map(lambda s: _encode({"s": s})))
schemathesis.openapi.format("history-cursor", _micros.map(lambda t: _encode({"t": t})))


# What the allowance dropped, printed at exit so a run shows how often it applied.
_allowed = collections.Counter()
atexit.register(
    lambda: print(
        "cross-field allowance applied: "
        + (", ".join(f"{k}: {n}" for k, n in sorted(_allowed.items())) or "never"),
        file=sys.stderr,
    )
)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202":
        return True
    definition = case.operation.definition.raw
    documented = definition.get("responses", {}).get(str(response.status_code), {})
    allowed = set(documented.get("x-cross-field-rules", []))
    if not allowed:
        return True
    try:
        problem = json.loads(response.content)
    except ValueError:
        return True
    codes = {problem.get("code")} | {error.get("code") for error in problem.get("errors") or []}
    # Keep the failure unless every broken rule is a documented cross-field one.
    if codes <= allowed:
        _allowed[f"{case.operation.label} {response.status_code} {'/'.join(sorted(codes))}"] += 1
        return False
    return True
