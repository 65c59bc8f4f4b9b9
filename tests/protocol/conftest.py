"""Hypothesis budgets for the protocol suite: quick by default, long with HYPOTHESIS_PROFILE=fuzz."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"

settings.register_profile("fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
if FUZZ:
    settings.load_profile("fuzz")


def examples(n: int) -> dict:
    """Settings for a property: `n` examples normally, the fuzz profile's budget under fuzz."""
    if FUZZ:
        return {"max_examples": max(n * 50, 2_000), "deadline": None,
                "suppress_health_check": [HealthCheck.too_slow]}
    return {"max_examples": n, "deadline": None}
