"""schemathesis hooks for the "fixtures" passes of tests/hostile/schemathesis.rs.

schemathesis draws header values small and alike ("0", "00"…), so most
commands of a pass would reuse one Idempotency-Key with another body and be
answered `409 idempotency_key_reused` before they reach the domain. In the
"fixtures" passes, which aim at real resources, a valid key is made unique
per request in positive cases; negative cases and invalid keys are left as
drawn, so that their refusals are still checked. The "generated" passes run
without this hook and keep the reuse.
"""

import uuid

import schemathesis


def _valid_key(value):
    return isinstance(value, str) and 1 <= len(value) <= 200 and all(" " <= c <= "~" for c in value)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # A negative case is left exactly as drawn: touching it makes schemathesis
    # revalidate it, and what it removed on purpose (the Authorization header
    # of a missing-header probe) would be sent after all.
    meta = case.meta
    if meta is None or meta.generation.mode.is_negative:
        return
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and _valid_key(headers[name]):
            headers[name] = f"{headers[name][:100]}-{uuid.uuid4()}"
