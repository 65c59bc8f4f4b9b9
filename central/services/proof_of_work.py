"""A proof-of-work challenge for the public booking form: no outside service, a few hundred milliseconds
of a phone's time per booking, and a cost that grows with every booking a script wants to make.

    issue(secret, bits)             a challenge: "v1.<bits>.<issued unix s>.<nonce>.<mac>"
    solve(challenge)                the counter a browser finds (the page's static/book.js does the same)
    verify(secret, challenge, counter, max_age_s)   None when good, else the reason code

A solution is a decimal counter such that SHA-256("<challenge>:<counter>") starts with `bits` zero
bits. The challenge carries its own HMAC (keyed with the app's secret), so the server keeps nothing
until it is used; the caller makes each challenge single-use (`central.web.booking` keeps the used ones
in the rate limiter's storage until they would have expired anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

VERSION = "v1"
MAX_BITS = 28


def _mac(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:24]


def issue(secret: bytes, bits: int, now: float | None = None) -> str:
    if not 0 <= bits <= MAX_BITS:
        raise ValueError("bits must be 0-28")
    body = f"{VERSION}.{bits}.{int(now if now is not None else time.time())}.{secrets.token_hex(8)}"
    return f"{body}.{_mac(secret, body)}"


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def good(challenge: str, counter: str, bits: int) -> bool:
    return leading_zero_bits(hashlib.sha256(f"{challenge}:{counter}".encode()).digest()) >= bits


def solve(challenge: str) -> str:
    bits = int(challenge.split(".")[1])
    counter = 0
    while not good(challenge, str(counter), bits):
        counter += 1
    return str(counter)


def verify(secret: bytes, challenge: str, counter: str, max_age_s: int, now: float | None = None) -> str | None:
    """None for a good solution of a challenge we issued in the last `max_age_s`; else a reason code."""
    if not isinstance(challenge, str) or not isinstance(counter, str) or len(challenge) > 100 or \
            not counter.isascii() or not counter.isdigit() or len(counter) > 12:
        return "pow_missing"
    parts = challenge.split(".")
    if len(parts) != 5 or parts[0] != VERSION or not parts[1].isdigit() or not parts[2].isdigit():
        return "pow_missing"
    body, mac = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return "pow_forged"
    age = (now if now is not None else time.time()) - int(parts[2])
    if not -60 <= age <= max_age_s:
        return "pow_expired"
    if not good(challenge, counter, int(parts[1])):
        return "pow_wrong"
    return None


__all__ = ["issue", "solve", "verify"]
