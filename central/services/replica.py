"""How far a hot standby is behind its primary, for the reports that read from it (`[database] read_url`).

A standby replays the primary's WAL; `pg_last_xact_replay_timestamp()` is the commit time of the last
transaction it replayed. While it has replayed all it received and still streams, it is up to date
however old that transaction is (a quiet night); otherwise its figures are as old as that time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

_STATE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(), "
    "pg_last_xact_replay_timestamp(), EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), "
    "EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')")


@dataclass(frozen=True)
class StandbyState:
    """What the reports page says about the server it read from."""

    available: bool  # False: the standby did not answer, the page was read from the primary
    streaming: bool = False  # it receives the primary's changes now
    lag_s: float = 0.0  # seconds behind: 0 while caught up and streaming
    as_of: datetime | None = None  # the primary's last change it holds


UNAVAILABLE = StandbyState(available=False)


def standby_state(session: Session) -> StandbyState | None:
    """The standby's lag; None when the server is not (or no longer: promoted) a standby."""
    in_recovery, caught_up, replayed_at, age_s, streaming = session.execute(_STATE).one()
    if not in_recovery:
        return None
    lag = 0.0 if (caught_up and streaming) or age_s is None else max(0.0, float(age_s))
    return StandbyState(available=True, streaming=bool(streaming), lag_s=lag, as_of=replayed_at)


__all__ = ["UNAVAILABLE", "StandbyState", "standby_state"]
