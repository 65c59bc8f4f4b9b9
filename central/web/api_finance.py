"""The JSON API for group customers and finance, on the API blueprint (`central.web.api`):
customers, group orders, statements and box-office shifts.

A channel's token (`park-central token create NAME --role sales --customer ID`) is scoped to its
customer and site: it orders only for that customer (a `customer_id` of another is a 403), only at
that site, and reads only that customer's orders and statements. A group order carries an
idempotency key (the `Idempotency-Key` header or the body's `idempotency_key`): a retry of the same
order answers the first one (200 instead of 201) and issues nothing new. The tickets an order issues
are billed to the customer at the contract price, so its statement bills exactly what the token issued.
"""

from __future__ import annotations

from flask import g, jsonify, request

from central.services import Invalid, NotFound, ServiceError, limits
from central.services import customers as customer_service
from central.services import finance as finance_service
from central.services import tickets as ticket_service
from central.web import api_schema as schema
from central.web.api import _site, accepts, api, ticket_json
from central.web.stack import Actor, Forbidden, actor, commit, current_context, require
from central.web.stack import db as request_db

SALES = ("sales", "manager")
CUSTOMER_READERS = ("sales", "finance", "manager")
FINANCE_READERS = ("finance", "manager")


def _money(value) -> str:
    return f"{value:.2f}"


def _who() -> Actor:
    who = actor()
    assert who is not None  # behind require()
    return who


def _scoped_site() -> str:
    """The site asked for; a channel's token may only ask for its own."""
    who = actor()
    site = _site()
    if who is not None and who.site is not None:
        if g.query.site not in (None, who.site):
            raise Forbidden("wrong_site", "this token is for another site")
        return who.site
    return site


def _scoped_customer(customer_id: int | None) -> int:
    """The customer a request is about; a channel's token may only name its own (or none)."""
    who = actor()
    if who is not None and who.customer_id is not None:
        if customer_id not in (None, who.customer_id):
            raise Forbidden("wrong_customer", "this token orders for another customer")
        return who.customer_id
    if customer_id is None:
        raise Invalid("missing", "customer_id is required")
    return customer_id


def customer_json(c, balance=None) -> dict:
    out = {"id": c.id, "name": c.name, "kind": c.kind, "status": c.status, "credit_limit": _money(c.credit_limit),
           "payment_term_days": c.payment_term_days, "note": c.note}
    if balance is not None:
        out["balance"] = _money(balance)
    return out


def order_json(o, tickets, progress, codes: bool) -> dict:
    signer = current_context().signer
    out_tickets = []
    for t in tickets:
        code = None
        if codes and t.status in ("valid", "used"):
            try:
                code = ticket_service.ticket_code(t, signer)
            except ServiceError:
                code = None
        out_tickets.append(ticket_json(t, code))
    return {"id": o.id, "customer_id": o.customer_id, "ticket_type": o.ticket_type_id,
            "visit_date": o.visit_date.isoformat(), "headcount": o.headcount, "guide_name": o.guide_name,
            "guide_phone": o.guide_phone, "ticketing": o.ticketing, "unit_price": _money(o.unit_price),
            "amount": _money(o.amount), "status": o.status, "idempotency_key": o.idempotency_key,
            "entered": progress.entered, "refunded": progress.refunded, "left": progress.left,
            "tickets": out_tickets}


def statement_json(v) -> dict:
    s = v.statement
    return {"id": s.id, "customer_id": s.customer_id, "start": s.period_start.isoformat(),
            "end": s.period_end.isoformat(), "status": s.status, "ordered": v.ordered, "entered": v.entered,
            "refunded": v.refunded, "no_show": v.no_show, "total": _money(v.total), "balance": _money(v.balance),
            "credit_limit": _money(v.credit_limit),
            "lines": [{"id": x.id, "kind": x.kind, "ticket_type": x.ticket_type_id, "description": x.description,
                       "ordered": x.ordered, "entered": x.entered, "refunded": x.refunded, "no_show": x.no_show,
                       "unit_price": _money(x.unit_price), "amount": _money(x.amount)} for x in v.lines]}


def shift_json(r) -> dict:
    s = r.shift
    return {"id": s.id, "window": s.window, "cashier": s.cashier, "opened_at": s.opened_at.isoformat(),
            "closed_at": s.closed_at.isoformat() if s.closed_at else None,
            "opening_float": _money(s.opening_float), "expected_cash": _money(r.expected_cash),
            "counted_cash": None if r.counted_cash is None else _money(r.counted_cash),
            "difference": None if r.difference is None else _money(r.difference),
            "by_type": [{"ticket_type": x.key, "tickets": x.tickets, "visitors": x.visitors,
                         "amount": _money(x.amount)} for x in r.by_type],
            "by_method": [{"method": m.method, "sales": _money(m.sales), "refunds": _money(m.refunds),
                           "net": _money(m.net)} for m in r.by_method],
            "pending_refunds": len(r.pending)}


# --- customers ---------------------------------------------------------------------------------


@api.get("/customers")
@require(*CUSTOMER_READERS)
@accepts()
def list_customers():
    db = request_db()
    who = actor()
    rows = customer_service.list_customers(db, _scoped_site())
    if who is not None and who.customer_id is not None:
        rows = [c for c in rows if c.id == who.customer_id]
    return jsonify({"customers": [customer_json(c, customer_service.balance(db, c.id)) for c in rows]})


@api.post("/customers")
@require(*SALES)
@accepts(body=schema.CustomerBody)
def create_customer(body: schema.CustomerBody):
    if _who().customer_id is not None:
        raise Forbidden("forbidden", "a channel's token cannot add customers")
    db = request_db()
    c = customer_service.create_customer(db, _scoped_site(), customer_service.CustomerSpec(
        name=body.name, kind=body.kind, credit_limit=body.credit_limit, payment_term_days=body.payment_term_days,
        note=body.note), actor=g.actor)
    out = customer_json(c, 0)
    commit()
    return jsonify(out), 201


@api.get("/customers/<id:customer_id>")
@require(*CUSTOMER_READERS)
@accepts()
def get_customer(customer_id: int):
    db = request_db()
    c = customer_service.get_customer(db, _scoped_customer(customer_id), _scoped_site())
    out = customer_json(c, customer_service.balance(db, c.id))
    out["contract_prices"] = [{"ticket_type": p.ticket_type_id, "price": _money(p.price),
                               "valid_from": p.valid_from.isoformat(),
                               "valid_to": p.valid_to.isoformat() if p.valid_to else None}
                              for p in customer_service.contract_prices(db, c.id)]
    return jsonify(out)


@api.post("/customers/<id:customer_id>/prices")
@require(*SALES)
@accepts(body=schema.ContractPriceBody)
def set_contract_price(customer_id: int, body: schema.ContractPriceBody):
    if _who().customer_id is not None:
        raise Forbidden("forbidden", "a channel's token cannot set prices")
    db = request_db()
    c = customer_service.get_customer(db, customer_id, _scoped_site())
    p = customer_service.set_contract_price(db, c.id, body.ticket_type, body.price, body.valid_from, body.valid_to,
                                            actor=g.actor)
    out = {"ticket_type": p.ticket_type_id, "price": _money(p.price), "valid_from": p.valid_from.isoformat(),
           "valid_to": p.valid_to.isoformat() if p.valid_to else None}
    commit()
    return jsonify(out), 201


def _set_status(customer_id: int, fn):
    if _who().customer_id is not None:
        raise Forbidden("forbidden", "a channel's token cannot do this")
    db = request_db()
    c = customer_service.get_customer(db, customer_id, _scoped_site())
    c, held = fn(db, c.id, actor=g.actor)
    out = customer_json(c) | {"tickets_changed": held}
    commit()
    return jsonify(out)


@api.post("/customers/<id:customer_id>/suspend")
@require(*CUSTOMER_READERS)
@accepts()
def suspend_customer(customer_id: int):
    return _set_status(customer_id, customer_service.suspend_customer)


@api.post("/customers/<id:customer_id>/resume")
@require(*CUSTOMER_READERS)
@accepts()
def resume_customer(customer_id: int):
    return _set_status(customer_id, customer_service.resume_customer)


# --- group orders ------------------------------------------------------------------------------


@api.post("/group-orders")
@require(*SALES)
@accepts(body=schema.GroupOrderBody)
def create_group_order(body: schema.GroupOrderBody):
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        limits.text("bad_idempotency_key", "Idempotency-Key", header.strip(), 128, required=True)
        if body.idempotency_key not in (None, header.strip()):
            raise Invalid("bad_idempotency_key", "the header and the body name different idempotency keys")
    key = (header.strip() if header is not None else None) or body.idempotency_key
    db = request_db()
    req = customer_service.GroupOrderRequest(
        customer_id=_scoped_customer(body.customer_id), ticket_type=body.ticket_type, visit_date=body.visit_date,
        headcount=body.headcount, guide_name=body.guide_name, guide_phone=body.guide_phone,
        members=[customer_service.Member(m.name, m.id_number) for m in body.members], slot_start=body.slot_start,
        slot_end=body.slot_end, payment_method=body.payment_method, idempotency_key=key)
    result = customer_service.create_group_order(db, _scoped_site(), req, actor=g.actor)
    out = order_json(result.order, result.tickets, customer_service.progress(db, result.order), codes=True)
    commit()
    return jsonify(out), 201 if result.created else 200


@api.get("/group-orders/<id:order_id>")
@require(*CUSTOMER_READERS)
@accepts()
def get_group_order(order_id: int):
    db = request_db()
    o = customer_service.get_order(db, order_id, _scoped_site())
    who = actor()
    if who is not None and who.customer_id not in (None, o.customer_id):
        raise NotFound("no_group_order", "There is no such group order.")
    return jsonify(order_json(o, customer_service.order_tickets(db, o.id), customer_service.progress(db, o),
                              codes=True))


# --- statements --------------------------------------------------------------------------------


@api.get("/statements")
@require(*FINANCE_READERS, "sales")
@accepts(query=schema.StatementsQuery)
def list_statements():
    db = request_db()
    who = actor()
    customer_id = g.query.customer_id
    if who is not None and who.role == "sales":
        customer_id = _scoped_customer(customer_id)
    rows = finance_service.list_statements(db, _scoped_site(), customer_id)
    return jsonify({"statements": [statement_json(finance_service.view(db, s)) for s in rows]})


@api.get("/statements/<id:statement_id>")
@require(*FINANCE_READERS, "sales")
@accepts()
def get_statement(statement_id: int):
    db = request_db()
    st = finance_service.get_statement(db, statement_id, _scoped_site())
    who = actor()
    if who is not None and who.role == "sales" and _scoped_customer(st.customer_id) != st.customer_id:
        raise NotFound("no_statement", "There is no such statement.")
    return jsonify(statement_json(finance_service.view(db, st)))


@api.post("/statements")
@require("finance")
@accepts(body=schema.StatementBody)
def open_statement(body: schema.StatementBody):
    db = request_db()
    st = finance_service.open_statement(db, _scoped_site(), body.customer_id, body.start, body.end, actor=g.actor)
    out = statement_json(finance_service.view(db, st))
    commit()
    return jsonify(out), 201


def _statement_step(statement_id: int, fn):
    db = request_db()
    st = finance_service.get_statement(db, statement_id, _scoped_site())
    st = fn(db, st.id, actor=g.actor)
    out = statement_json(finance_service.view(db, st))
    commit()
    return jsonify(out)


@api.post("/statements/<id:statement_id>/recount")
@require("finance")
@accepts()
def recount_statement(statement_id: int):
    return _statement_step(statement_id, finance_service.recount)


@api.post("/statements/<id:statement_id>/check")
@require("finance")
@accepts()
def check_statement(statement_id: int):
    return _statement_step(statement_id, finance_service.check_statement)


@api.post("/statements/<id:statement_id>/close")
@require("finance")
@accepts()
def close_statement(statement_id: int):
    return _statement_step(statement_id, finance_service.close_statement)


@api.post("/statements/<id:statement_id>/corrections")
@require("finance")
@accepts(body=schema.CorrectionBody)
def add_correction(statement_id: int, body: schema.CorrectionBody):
    db = request_db()
    st = finance_service.get_statement(db, statement_id, _scoped_site())
    finance_service.add_correction(db, st.id, body.description, body.amount, actor=g.actor)
    db.refresh(st)
    out = statement_json(finance_service.view(db, st))
    commit()
    return jsonify(out), 201


# --- box-office shifts -------------------------------------------------------------------------


@api.get("/shifts")
@require(*FINANCE_READERS)
@accepts()
def list_shifts():
    db = request_db()
    return jsonify({"shifts": [shift_json(finance_service.shift_report(db, s))
                               for s in finance_service.list_shifts(db, _scoped_site())]})


def _own_shift(shift_id: int):
    db = request_db()
    s = finance_service.get_shift(db, shift_id, _scoped_site())
    who = actor()
    if who is not None and who.role == "staff" and s.cashier != who.name:
        raise NotFound("no_shift", "There is no such shift.")
    return s


@api.get("/shifts/<id:shift_id>")
@require("staff", *FINANCE_READERS)
@accepts()
def get_shift(shift_id: int):
    return jsonify(shift_json(finance_service.shift_report(request_db(), _own_shift(shift_id))))


@api.post("/shifts")
@require("staff")
@accepts(body=schema.ShiftBody)
def open_shift(body: schema.ShiftBody):
    db = request_db()
    s = finance_service.open_shift(db, _scoped_site(), g.actor, body.window, body.opening_float)
    out = shift_json(finance_service.shift_report(db, s))
    commit()
    return jsonify(out), 201


@api.post("/shifts/<id:shift_id>/sell")
@require("staff")
@accepts(body=schema.ShiftSaleBody)
def sell_in_shift(shift_id: int, body: schema.ShiftSaleBody):
    db = request_db()
    s = _own_shift(shift_id)
    req = ticket_service.IssueRequest(ticket_type=body.ticket_type, visit_date=body.visit_date,
                                      headcount=body.headcount, channel="box_office")
    tickets = finance_service.sell_in_shift(db, s.id, req, body.quantity, body.method, g.actor,
                                            customer_id=body.customer_id)
    signer = current_context().signer
    out = {"count": len(tickets), "tickets": [ticket_json(t, ticket_service.ticket_code(t, signer)) for t in tickets]}
    commit()
    return jsonify(out), 201


@api.post("/shifts/<id:shift_id>/refund")
@require("staff")
@accepts(body=schema.ShiftRefundBody)
def refund_in_shift(shift_id: int, body: schema.ShiftRefundBody):
    db = request_db()
    s = _own_shift(shift_id)
    payment = finance_service.refund_in_shift(db, s.id, body.ticket_id, g.actor, body.reason or "")
    out = {"ticket_id": body.ticket_id, "amount": _money(payment.amount), "status": payment.status}
    commit()
    return jsonify(out)


@api.post("/shifts/<id:shift_id>/close")
@require("staff")
@accepts(body=schema.ShiftCloseBody)
def close_shift(shift_id: int, body: schema.ShiftCloseBody):
    db = request_db()
    s = _own_shift(shift_id)
    s = finance_service.close_shift(db, s.id, body.counted_cash, g.actor, body.note)
    out = shift_json(finance_service.shift_report(db, s))
    commit()
    return jsonify(out)
