"""Revoking machine tokens and deactivating staff users, from the CLI, the admin pages and the API:
each takes effect at once (401 for the token, the user's open sessions end) and is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from central.cli import main
from central.models import ApiToken, AuditEntry
from central.services.users import create_token
from tests.web.conftest import Browser, login, password_for


def _audit(ctx, action: str, target: str) -> list[AuditEntry]:
    with ctx.sessions() as db:
        return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.target == target)))


def _token(ctx, name: str, role: str) -> str:
    with ctx.sessions.begin() as db:
        return create_token(db, name, role)[1]


def _bearer(app, token: str, path: str = "/api/v1/occupancy", method: str = "get"):
    return getattr(app.test_client(), method)(path, headers={"Authorization": f"Bearer {token}"})


def _logged_out(browser: Browser) -> bool:
    res = browser.get("/desk/")
    return res.status_code == 302 and "/login" in res.headers["Location"]


@pytest.fixture
def cli(web_ctx, tmp_path, capsys):
    """`park-central --config FILE ...` in this process, against the test's database."""
    cfg = web_ctx.config
    path = tmp_path / "central.toml"
    path.write_text(f'database_url = "{cfg.database_url}"\nsite = "{cfg.site}"\n'
                    f'[keys]\nsigning_key_file = "{cfg.keys.signing_key_file}"\n'
                    f'signing_key_id = {cfg.keys.signing_key_id}\ntemplate_key = "{cfg.keys.template_key}"\n')

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--config", str(path), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_the_cli_revokes_a_token_and_deactivates_a_user_at_once(app, web_ctx, cli):
    code, out, _ = cli("token", "create", "box-office", "--role", "staff")
    assert code == 0
    token = out.strip().rsplit(" ", 1)[-1]
    assert _bearer(app, token).status_code == 200
    code, out, _ = cli("token", "list")
    assert "box-office" in out and "active" in out and token not in out
    assert cli("token", "revoke", "box-office")[:2] == (0, "revoked 1 token named box-office\n")
    res = _bearer(app, token)
    assert res.status_code == 401 and res.get_json()["error"] == "bad_token"
    assert "revoked" in cli("token", "list")[1]
    code, _out, err = cli("token", "revoke", "box-office")
    assert code == 1 and "no active token named box-office" in err

    staff = login(app, "staff")
    code, out, _ = cli("user", "deactivate", "staff")
    assert code == 0 and "deactivated" in out
    assert _logged_out(staff)
    listing = cli("user", "list")[1]
    assert [line.split()[:3] for line in listing.splitlines() if line.startswith("staff ")] == [
        ["staff", "staff", "inactive"]]
    browser = Browser(app.test_client())
    browser.get("/login")
    assert browser.post("/login", {"username": "staff", "password": password_for("staff")}).status_code == 401
    assert cli("user", "reactivate", "staff")[0] == 0
    assert login(app, "staff").get("/desk/").status_code == 200
    assert cli("user", "deactivate", "nobody")[0] == 1
    assert [e.actor for e in _audit(web_ctx, "token.revoke", "box-office")] == ["cli"]
    assert [e.actor for e in _audit(web_ctx, "user.deactivate", "staff")] == ["cli"]
    assert [e.actor for e in _audit(web_ctx, "user.reactivate", "staff")] == ["cli"]


def test_a_new_password_from_the_cli_ends_the_users_sessions(app, cli):
    manager = login(app, "manager")
    code, out, _ = cli("user", "password", "manager")
    assert code == 0
    new = out.split("one-time password: ")[1].split(" ")[0]
    res = manager.get("/dashboard/")
    assert res.status_code == 302 and "/login" in res.headers["Location"]
    browser = Browser(app.test_client())
    browser.get("/login")
    assert browser.post("/login", {"username": "manager", "password": new}).status_code == 302


def test_the_admin_page_revokes_tokens_and_deactivates_users_with_confirmation(app, web_ctx):
    token = _token(web_ctx, "ota-feed", "staff")
    staff = login(app, "staff")
    admin = login(app, "admin")
    page = admin.get("/admin/users").get_data(as_text=True)
    assert 'id="tokens"' in page and "ota-feed" in page
    assert 'data-confirm="Revoke token ota-feed?' in page
    assert 'data-confirm="Deactivate staff?' in page
    assert "/admin/users/admin/deactivate" not in page  # no button to lock oneself out
    with web_ctx.sessions() as db:
        token_id = db.scalar(select(ApiToken.id).where(ApiToken.name == "ota-feed"))
    assert admin.client.post(f"/admin/tokens/{token_id}/revoke").status_code == 400  # the CSRF token is needed
    assert _bearer(app, token).status_code == 200
    res = admin.post(f"/admin/tokens/{token_id}/revoke")
    assert res.status_code == 302
    assert _bearer(app, token).status_code == 401
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "Token ota-feed is revoked" in page

    assert admin.post("/admin/users/staff/deactivate").status_code == 302
    assert _logged_out(staff)
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "staff is deactivated" in page and "/admin/users/staff/reactivate" in page
    res = admin.post("/admin/users/admin/deactivate")
    assert "cannot deactivate your own account" in admin.get(res.headers["Location"]).get_data(as_text=True)
    assert admin.get("/admin/users").status_code == 200  # still logged in
    assert admin.post("/admin/users/staff/reactivate").status_code == 302
    assert login(app, "staff").get("/desk/").status_code == 200
    assert [e.actor for e in _audit(web_ctx, "token.revoke", "ota-feed")] == ["admin"]
    assert [e.actor for e in _audit(web_ctx, "user.deactivate", "staff")] == ["admin"]


def test_the_api_revokes_tokens_and_deactivates_users_for_admins_only(app, web_ctx):
    root = _token(web_ctx, "ops", "admin")
    feed = _token(web_ctx, "feed", "manager")
    feed2 = _token(web_ctx, "feed", "staff")  # names need not be unique: both go
    assert _bearer(app, feed, "/api/v1/tokens/ops/revoke", "post").status_code == 403
    res = _bearer(app, root, "/api/v1/tokens/feed/revoke", "post")
    assert res.status_code == 200 and res.get_json() == {"name": "feed", "revoked": 2}
    assert _bearer(app, feed).status_code == 401 and _bearer(app, feed2).status_code == 401
    res = _bearer(app, root, "/api/v1/tokens/feed/revoke", "post")
    assert res.status_code == 404 and res.get_json()["error"] == "no_token"

    staff = login(app, "staff")
    res = _bearer(app, root, "/api/v1/users/staff/deactivate", "post")
    assert res.status_code == 200 and res.get_json() == {"username": "staff", "role": "staff", "active": False}
    assert _logged_out(staff)
    assert staff.client.get("/api/v1/occupancy").status_code == 401
    assert _bearer(app, root, "/api/v1/users/nobody/deactivate", "post").status_code == 404
    staff_token = _token(web_ctx, "desk", "staff")
    assert _bearer(app, staff_token, "/api/v1/users/manager/deactivate", "post").status_code == 403
    res = _bearer(app, root, "/api/v1/users/staff/reactivate", "post")
    assert res.status_code == 200 and res.get_json()["active"] is True
    assert [e.actor for e in _audit(web_ctx, "user.deactivate", "staff")] == ["token:ops"]
    assert len(_audit(web_ctx, "token.revoke", "feed")) == 2


def test_the_last_admin_cannot_be_deactivated(app, web_ctx):
    root = _token(web_ctx, "ops", "admin")
    res = _bearer(app, root, "/api/v1/users/admin/deactivate", "post")
    assert res.status_code == 409 and res.get_json()["error"] == "last_admin"
    assert login(app, "admin").get("/admin/users").status_code == 200
