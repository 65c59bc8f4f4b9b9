"""One row by the id a person or a client gave: anything but a stored row of the park is NotFound."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from central.services import NotFound, limits

Row = TypeVar("Row")


def get_in_site(session: Session, model: type[Row], row_id: Any, site_id: str | None, code: str, text: object) -> Row:
    """`model`'s row `row_id` (a whole number in range, not a bool), of `site_id` when given; else
    NotFound(code, text), the same answer whether the id is absurd, unknown or another park's."""
    if isinstance(row_id, bool) or not isinstance(row_id, int) or not 0 < row_id <= limits.MAX_ID:
        raise NotFound(code, text)
    row = session.get(model, row_id)
    found: Any = row  # every model given here has a site_id column
    if found is None or (site_id is not None and found.site_id != site_id):
        raise NotFound(code, text)
    return found


__all__ = ["get_in_site"]
