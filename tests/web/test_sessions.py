"""Server-side sessions: a session ends at logout, at a password change and at deactivation, at once,
whatever the signed cookie would still be worth."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from central.models import StaffSession, StaffUser, utcnow
from central.services.users import deactivate_user, session_user, start_session
from tests.web.conftest import Browser, login, password_for


def _cookie(browser: Browser) -> str:
    return browser.client.get_cookie("session").value


def _replay(app, cookie: str) -> Browser:
    """Another client presenting a copied session cookie, as an attacker who kept it would."""
    client = app.test_client()
    client.set_cookie("session", cookie)
    return Browser(client)


def test_a_cookie_replayed_after_logout_gets_the_login_page_and_401_on_the_api(app):
    staff = login(app, "staff")
    kept = _cookie(staff)
    assert _replay(app, kept).get("/desk/").status_code == 200  # the copy works while the session lives
    assert _replay(app, kept).client.get("/api/v1/occupancy").status_code == 200
    assert staff.post("/logout").status_code == 302
    res = _replay(app, kept).get("/desk/")
    assert res.status_code == 302 and "/login" in res.headers["Location"]
    res = _replay(app, kept).client.get("/api/v1/occupancy")
    assert res.status_code == 401
    assert res.get_json()["error"] == "login_required"


def test_a_second_browsers_session_ends_when_the_password_changes(app, web_ctx):
    laptop = login(app, "manager")
    tablet = login(app, "manager")
    assert tablet.get("/dashboard/").status_code == 200
    page = laptop.get("/account/password")
    assert page.status_code == 200
    res = laptop.post("/account/password", {"current_password": password_for("manager"),
                                            "new_password": "a-new-Secret-42", "confirm_password": "a-new-Secret-42"})
    assert res.status_code == 302
    assert laptop.get("/dashboard/").status_code == 200  # the browser that changed it stays logged in
    res = tablet.get("/dashboard/")
    assert res.status_code == 302 and "/login" in res.headers["Location"]
    assert tablet.client.get("/api/v1/occupancy").status_code == 401
    # the old password no longer opens a session, the new one does
    fresh = Browser(app.test_client())
    fresh.get("/login")
    assert fresh.post("/login", {"username": "manager", "password": password_for("manager")}).status_code == 401
    assert fresh.post("/login", {"username": "manager", "password": "a-new-Secret-42"}).status_code == 302
    with web_ctx.sessions() as db:
        user = db.scalar(select(StaffUser).where(StaffUser.username == "manager"))
        why = {r.revoked_why for r in db.scalars(select(StaffSession).where(StaffSession.user_id == user.id))}
        assert "password" in why


def test_a_wrong_current_password_changes_nothing(app):
    manager = login(app, "manager")
    manager.get("/account/password")
    res = manager.post("/account/password", {"current_password": "guess", "new_password": "x-Secret-1",
                                             "confirm_password": "x-Secret-1"})
    assert res.status_code == 400
    assert "current password is wrong" in res.get_data(as_text=True)
    assert login(app, "manager").get("/dashboard/").status_code == 200


def test_a_deactivated_users_open_sessions_end_at_once(app, web_ctx):
    staff = login(app, "staff")
    other = login(app, "staff")
    assert staff.get("/desk/").status_code == 200
    with web_ctx.sessions.begin() as db:
        deactivate_user(db, "staff", actor="admin")
    for browser in (staff, other):
        res = browser.get("/desk/")
        assert res.status_code == 302 and "/login" in res.headers["Location"]
        assert browser.client.get("/api/v1/occupancy").status_code == 401
    browser = Browser(app.test_client())
    browser.get("/login")
    assert browser.post("/login", {"username": "staff", "password": password_for("staff")}).status_code == 401


def test_a_session_older_than_its_lifetime_is_over(web_ctx):
    with web_ctx.sessions.begin() as db:
        user = db.scalar(select(StaffUser).where(StaffUser.username == "staff"))
        sid = start_session(db, user, lifetime=timedelta(hours=12), now=utcnow() - timedelta(hours=13))
        fresh = start_session(db, user)
    with web_ctx.sessions.begin() as db:
        assert session_user(db, sid) is None
        assert session_user(db, fresh).username == "staff"
        assert session_user(db, "forged-" + fresh) is None


def test_the_session_table_keeps_no_usable_session_id(app, web_ctx):
    staff = login(app, "staff")
    with staff.client.session_transaction() as sess:
        sid = sess["sid"]
    with web_ctx.sessions() as db:
        rows = list(db.scalars(select(StaffSession)))
    assert rows and all(sid not in (r.sid_hash, r.client_hash) for r in rows)
