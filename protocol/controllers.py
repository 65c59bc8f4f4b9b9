"""The turnstile controller models a gate knows without being told: the profiles shipped with the
drivers package (`drivers/controllers/<model>.toml`).

The central names a model in `GateConfig.hardware.controller_profile` and must not name one no gate
has; it cannot read the drivers package (it never depends on it), so the names are part of the
contract. `tests/drivers/test_package.py` checks this list against the files the drivers ship. A
site's own models (files in a gate's `[devices.turnstile] profile_dir`) are added at the central with
`[gates] controller_profiles`.
"""

from __future__ import annotations

SHIPPED_PROFILES: tuple[str, ...] = ("swing-regcmd", "tripod-coil")
DEFAULT_PROFILE = "tripod-coil"

__all__ = ["DEFAULT_PROFILE", "SHIPPED_PROFILES"]
