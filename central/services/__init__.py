"""Domain services: plain functions taking a Session, called alike by the API, the web UI, the ingest
worker, the scheduler and the CLI. They flush but never commit: the caller owns the transaction.

Errors a caller must handle (the API turns them into JSON `{"error": code, "detail": ...}`):

    ServiceError            code, detail, HTTP status
    ├── NotFound            404: no such ticket, pass, gate ...
    ├── Invalid             400: a request that cannot be right (bad dates, unknown zone ...)
    └── Refused             409: right in form, refused by state (quota full, ticket already refunded)
"""

from __future__ import annotations


class ServiceError(Exception):
    """`code` is stable (machines, tests); `detail` is for people: a text marked for translation
    (`central.i18n._l`), read in the reader's language when shown (`text`)."""

    status = 400
    field: str | None = None  # the request's field it is about, where the API knows it

    def __init__(self, code: str, detail: object = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail

    @property
    def text(self) -> str:
        """The detail in the current language (the code when there is none)."""
        return str(self.detail) if self.detail else self.code


class NotFound(ServiceError):
    status = 404


class Invalid(ServiceError):
    status = 400


class Refused(ServiceError):
    status = 409


__all__ = ["Invalid", "NotFound", "Refused", "ServiceError"]
