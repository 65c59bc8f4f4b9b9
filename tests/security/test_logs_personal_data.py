"""Logs and tracebacks never carry personal data: errors provoked with a name, a phone, an ID number and a
ticket code in the requests (refusals, a value the database cannot store, an unexpected exception in a
service) leave none of them in any log record, in the traceback Flask logs, or on stderr.

The app is served by waitress on a free port (as `park-central serve` does) against PostgreSQL, whose
error messages quote the values of a row it cannot store.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.error
import urllib.request

import pytest

from central.services.users import create_token
from tests.web.conftest import login

pytestmark = pytest.mark.postgres

NAME = "Zhang Xiaoming"
PHONE = "+86 139 8765 4321"
ID_NUMBER = "11010519491231002X"


@pytest.fixture
def app(web_ctx):
    """The whole app (API and pages) on the web suite's store, its errors answered and logged as in production."""
    from central.app import create_app

    return create_app(web_ctx.config, context=web_ctx)


@pytest.fixture
def served(app):
    """The app behind waitress on 127.0.0.1 (a free port); yields its base URL."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=10)


@pytest.fixture
def staff_token(web_ctx) -> str:
    with web_ctx.sessions.begin() as db:
        return create_token(db, "desk-box", "staff")[1]


def _call(base: str, token: str, method: str, path: str, body) -> tuple[int, object]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + "/api/v1" + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:  # noqa: S310 (loopback)
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _leaks(text: str, secrets: list[str]) -> list[str]:
    compact = text.replace(" ", "")
    return [s for s in secrets if s in text or s.replace(" ", "") in compact or s.lower() in text.lower()]


def test_errors_with_personal_data_leave_none_of_it_in_the_logs(app, web_ctx, served, staff_token, caplog, capfd,
                                                                monkeypatch):
    from central.services import limits, passes
    from central.services import tickets as ticket_service

    caplog.set_level(logging.DEBUG)
    with web_ctx.sessions.begin() as db:
        ticket = ticket_service.issue_ticket(db, web_ctx.config.site, ticket_service.IssueRequest(ticket_type=1))
        code = ticket_service.ticket_code(ticket, web_ctx.signer)
    secrets = [NAME, PHONE, ID_NUMBER, code, code[:40]]
    answers: list[tuple[str, int, object]] = []
    expected: list[int] = []  # checked after the logs, so that a leak is what fails first

    def call(status: int, method: str, path: str, body) -> None:
        expected.append(status)
        answers.append((path, *_call(served, staff_token, method, path, body)))

    def page(status: int, form: dict) -> None:
        expected.append(status)
        answers.append(("/desk/persons", staff.post("/desk/persons", form).status_code, None))

    staff = login(app, "staff")
    # Refusals at the edge, each request full of personal data.
    call(400, "POST", "/persons", {"name": NAME, "phone": PHONE + " ext 12345678901234567890"})
    call(400, "POST", "/persons", {"name": NAME + "\x00", "phone": PHONE})
    call(400, "POST", "/persons", {"name": NAME, "phone": PHONE, "code": code})
    call(400, "POST", "/tickets", {"ticket_type": 1, "holder_name": NAME, "id_number": ID_NUMBER, "headcount": 0})
    call(400, "POST", "/tickets", {"ticket_type": 1, "holder_name": NAME, "channel_ref": code + "\n"})
    call(404, "POST", "/bookings", {"ticket_type": 1, "slot_start": "2031-06-01T10:00:00+08:00",
                                    "id_number": ID_NUMBER, "holder_name": NAME})
    call(400, "POST", "/persons", f'{{"name": "{NAME}", "phone": "{PHONE}"'.encode())  # cut short
    # An unexpected exception in a service, whose message carries all of it; in the API and in a page
    # (where Flask logs the traceback itself).
    real_create_person = passes.create_person

    def broken(session, site_id, name, **kwargs):
        raise RuntimeError(f"cannot store {name} {kwargs.get('phone')} {ID_NUMBER} {code}")

    monkeypatch.setattr(passes, "create_person", broken)
    call(500, "POST", "/persons", {"name": NAME, "phone": PHONE})
    page(500, {"name": NAME, "phone": PHONE})
    monkeypatch.setattr(passes, "create_person", real_create_person)
    # Past the checks (loosened here): a phone the column cannot hold reaches PostgreSQL, whose error
    # and SQLAlchemy's quote the row.
    monkeypatch.setattr(limits, "PHONE", 10_000)
    monkeypatch.setattr(limits, "_PHONE", re.compile(r".*"))
    page(500, {"name": NAME, "phone": f"{PHONE} / {ID_NUMBER} / {code}"})

    logged = [caplog.text]
    for record in caplog.records:
        logged += [record.getMessage(), record.exc_text or "", repr(record.args)]
    out, err = capfd.readouterr()
    logged += [out, err]
    text = "\n".join(logged)
    assert _leaks(text, secrets) == []
    # The errors were logged (so the search searched something), as their types and stacks.
    assert text.count("(message withheld)") >= 3 and "RuntimeError" in text and "StringDataRightTruncation" in text
    assert "central/web/api.py" in text and "central/web/desk.py" in text
    assert [status for _path, status, _answer in answers] == expected
    for path, status, answer in answers:
        if status == 500 and path.startswith("/persons"):  # nothing of the request in the answer either
            assert answer == {"error": "internal_error", "detail": "an unexpected error; it was logged"}
