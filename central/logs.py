"""Logging an unexpected exception without what it says: its types and its stack, never its message.

An exception's message can carry what a request carried: psycopg quotes the values of a row it could
not store ("Key (card_uid)=(04A2...) already exists"), SQLAlchemy appends the statement's parameters
(the engine hides those too, `central.db`), and code may format a name into a ValueError. So the log
of an unexpected error names where it happened (the stack: file, line, source line) and what kind of
error it was (the type, a database's SQLSTATE), and withholds every message.
"""

from __future__ import annotations

import traceback


def stack_without_messages(exc: BaseException) -> str:
    """The traceback of `exc` and of its causes, with each message replaced by its type."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = f"{type(current).__module__}.{type(current).__qualname__}"
        sqlstate = getattr(getattr(current, "orig", current), "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.isalnum() and len(sqlstate) == 5:
            kind += f" (SQLSTATE {sqlstate})"
        frames = "".join(traceback.format_list(traceback.extract_tb(current.__traceback__)))
        parts.append(f"Traceback (most recent call last):\n{frames}{kind}: (message withheld)\n")
        current = current.__cause__ or current.__context__
    return "\nwhile handling, or caused by:\n".join(reversed(parts)) if len(parts) > 1 else parts[0]
