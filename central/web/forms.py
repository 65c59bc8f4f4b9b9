"""Reading a submitted form's values: a number or a day as typed, or None (the view then names the field)."""

from __future__ import annotations

from datetime import date
from typing import overload


@overload
def form_int(value: object) -> int | None: ...
@overload
def form_int(value: object, default: int) -> int: ...
def form_int(value: object, default: int | None = None) -> int | None:
    """A whole number as typed (spaces around it allowed), else `default`."""
    try:
        return int(str(value).strip()) if value is not None else default
    except ValueError:
        return default


def read_photo(upload, limit: int) -> tuple[bytes, str | None]:
    """An uploaded photo's bytes (at most `limit` + 1 read), and why it is not usable: "too_large",
    "format" (not JPEG, PNG or WebP), "unreadable", or None. The desk and the booking site say it each
    in their own words."""
    import io

    from PIL import Image, UnidentifiedImageError

    data = upload.read(limit + 1)
    if len(data) > limit:
        return data, "too_large"
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("JPEG", "PNG", "WEBP"):
                return data, "format"
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return data, "unreadable"
    return data, None


def form_day(value: str | None) -> date | None:
    """A YYYY-MM-DD day as a date input sends it, else None."""
    try:
        return date.fromisoformat(value.strip()) if value else None
    except ValueError:
        return None


__all__ = ["form_day", "form_int", "read_photo"]
