"""Security scenarios reuse the gate agent's fixtures: a signer, a central stand-in on MQTT, gates."""

from tests.gate_agent.conftest import gate_factory, probe, signer, site, turnstile_factory  # noqa: F401
