"""The errors a caller of `protocol` must handle.

    ProtocolError              anything outside bytes that does not honour the contract
    ├── MessageError           an MQTT payload that is malformed, oversized or of an unknown version
    └── CodeError              a ticket code that is not a code, truncated, forged, or signed by an
                               unknown or retired key

Both carry a short machine-readable `reason` and never the offending payload itself (it may hold
personal data or a full ticket code).
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Outside input that does not honour the contract."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class MessageError(ProtocolError):
    """A payload refused by a message decoder; `field` names the offending field where known."""

    def __init__(self, reason: str, detail: str = "", field: str | None = None) -> None:
        self.field = field
        super().__init__(reason, detail)


class CodeError(ProtocolError):
    """A ticket code refused by the verifier; `reason` is one of `protocol.reasons.Reason`'s codes."""
