"""Login throttling by client address, by (user, address) and by user: a stranger cannot lock staff
out, and nobody guesses passwords quickly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from central.config import ConfigError, load_config
from central.models import AuditEntry, utcnow
from central.web import security
from tests.web.conftest import Browser, password_for

STRANGER = "203.0.113.66"
OFFICE = "198.51.100.7"
PHONE = "198.51.100.99"


def browser_at(app, address: str) -> Browser:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    browser = Browser(client)
    browser.get("/login")
    return browser


def test_a_strangers_fifty_wrong_passwords_do_not_stop_the_real_user_at_another_address(app):
    stranger = browser_at(app, STRANGER)
    answers = [stranger.post("/login", {"username": "manager", "password": f"guess{i}"}) for i in range(50)]
    codes = [res.status_code for res in answers]
    assert set(codes[:10]) == {401} and set(codes[10:]) == {429}, codes
    last = answers[-1]
    assert "Too many failed logins from your address" in last.get_data(as_text=True)
    assert int(last.headers["Retry-After"]) > 0
    # the stranger's address is throttled even with the right password ...
    assert stranger.post("/login", {"username": "manager", "password": password_for("manager")}).status_code == 429
    # ... the manager at the office is not
    office = browser_at(app, OFFICE)
    res = office.post("/login", {"username": "manager", "password": password_for("manager")})
    assert res.status_code == 302 and res.headers["Location"] == "/dashboard/"


def test_the_real_users_own_five_failures_lock_them_out_at_that_address(app, web_ctx):
    office = browser_at(app, OFFICE)
    for _ in range(5):
        assert office.post("/login", {"username": "staff", "password": "typo"}).status_code == 401
    res = office.post("/login", {"username": "staff", "password": password_for("staff")})
    assert res.status_code == 401
    assert "locked on this device until" in res.get_data(as_text=True)
    # another user at the same desk, and the same user on their phone, are not affected
    assert browser_at(app, OFFICE).post("/login", {"username": "manager",
                                                   "password": password_for("manager")}).status_code == 302
    assert browser_at(app, PHONE).post("/login", {"username": "staff",
                                                  "password": password_for("staff")}).status_code == 302
    with web_ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "auth.locked", AuditEntry.target == "staff")) == 1


def test_successful_logins_from_one_office_address_are_never_throttled(app):
    for _ in range(15):  # more than the address's ten failures a minute
        res = browser_at(app, OFFICE).post("/login", {"username": "staff", "password": password_for("staff")})
        assert res.status_code == 302


def test_failures_from_many_addresses_slow_every_attempt_for_that_account_with_a_growing_delay(web_ctx):
    start = utcnow()
    with web_ctx.sessions.begin() as db:
        for i in range(security.USER_SLOW_AFTER):  # one failure each from twenty addresses: no pair lock
            result = security.login(db, "technician", "guess", client=f"bot{i}", now=start)
            assert result.locked_until is None
        right = password_for("technician")
        slowed = security.login(db, "technician", right, client="office", now=start + timedelta(milliseconds=500))
        assert not slowed.ok and slowed.retry_after_s == 1
        assert security.login(db, "technician", right, client="office", now=start + timedelta(seconds=1.5)).ok
        # the office's success does not wipe the strangers' failures: two more, and the wait doubles
        later = start + timedelta(seconds=2)
        assert not security.login(db, "technician", "guess", client="bot-a", now=later).ok
        waiting = security.login(db, "technician", right, client="office", now=later + timedelta(seconds=1))
        assert waiting.retry_after_s == 1  # 21 failures: 2 s after the last one
        assert security.login(db, "technician", right, client="office", now=later + timedelta(seconds=2.5)).ok
        assert security.lock_state(db, "technician", now=later).slowed_until is not None
        security.unlock(db, "technician", "admin")
        assert not security.lock_state(db, "technician", now=later)


@pytest.mark.parametrize(("failures", "delay"), [(0, 0), (19, 0), (20, 1), (21, 2), (23, 8), (25, 32), (26, 60),
                                                 (500, 60)])
def test_the_per_user_delay_grows_and_stays_short(failures, delay):
    assert security.user_delay_s(failures) == delay


def test_the_limiter_storage_is_configurable_and_checked(tmp_path):
    path = tmp_path / "central.toml"
    path.write_text('[web]\nratelimit_storage = "redis://127.0.0.1:6379"\n')
    assert load_config(path, env={}).web.ratelimit_storage == "redis://127.0.0.1:6379"
    assert load_config(None, env={}).web.ratelimit_storage == "memory://"
    path.write_text('[web]\nratelimit_storage = "/tmp/counters"\n')
    with pytest.raises(ConfigError, match="web.ratelimit_storage"):
        load_config(path, env={})
