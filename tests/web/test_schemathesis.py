"""Schemathesis against the real app on PostgreSQL: property-based requests generated from the API's own
OpenAPI document, valid and invalid, for every operation, with an admin and a staff bearer token.

Every answer must be no server error, documented (status code and content type) and shaped as the
document says. Quick by default (a fixed number of examples per operation); longer with
HYPOTHESIS_PROFILE=fuzz. What it found is listed in the README's security section.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from central.services.users import create_token
from tests.protocol.conftest import FUZZ

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(0 if FUZZ else 900)]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation and generation mode (valid, invalid): about a minute in all by default; the staff
# token meets 403 on most operations, so it needs fewer.
EXAMPLES = {"admin": 500, "staff": 200} if FUZZ else {"admin": 25, "staff": 10}


@pytest.fixture(params=["admin", "staff"])
def role(request) -> str:
    return request.param


@pytest.fixture
def token(role, web_ctx) -> str:
    """A bearer token of the role (the app's database is the test's own PostgreSQL one)."""
    with web_ctx.sessions.begin() as db:
        return create_token(db, f"schemathesis-{role}", role)[1]


def seed_records(app) -> None:
    """Records for the generated ids to find now and then (1, 2 ...): tickets, a person with a pass, a gate."""
    client = app.test_client()
    ctx = app.extensions["central"]
    with ctx.sessions.begin() as db:
        admin = create_token(db, "seed", "admin")[1]
    headers = {"Authorization": f"Bearer {admin}"}
    for body in ({"ticket_type": 1}, {"ticket_type": 1, "headcount": 3, "holder_name": "Li Lei"}):
        assert client.post("/api/v1/tickets", json=body, headers=headers).status_code == 201
    person = client.post("/api/v1/persons", json={"name": "Han Meimei", "phone": "+86 139 0000 0002"},
                         headers=headers).get_json()
    assert client.post("/api/v1/passes", headers=headers, json={
        "person_id": person["id"], "valid_from": "2031-01-01T00:00:00+08:00",
        "valid_to": "2032-01-01T00:00:00+08:00", "card_uid": "04A2B3C4"}).status_code == 201
    assert client.post("/api/v1/gates", json={"name": "g1", "zone": 1}, headers=headers).status_code == 201


def _describe(exc: BaseException) -> str:
    """What Schemathesis says of a failure: its message, and each distinct check that failed."""
    parts = [str(exc)]
    for sub in getattr(exc, "exceptions", ()):
        parts.append(f"  - {type(sub).__name__}: {sub}")
    return "\n".join(parts)


def test_every_operation_answers_as_documented_whatever_it_is_sent(app, role, token):
    """Each operation, valid and invalid requests; every failure is collected, then all are shown."""
    seed_records(app)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Schemathesis's own pytest integration for fixtures (`from_fixture`) does not run on pytest 9.2:
            # its strategies under plain Hypothesis do the same work.
            @settings(max_examples=EXAMPLES[role], deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def answers_as_documented(case):
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                answers_as_documented()
            except (Exception, BaseExceptionGroup) as exc:  # every finding, reported together below
                failures.append(f"{operation.label} ({mode.value}):\n{_describe(exc)}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
