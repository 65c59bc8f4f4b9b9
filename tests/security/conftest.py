"""Security scenarios reuse the gate agent's fixtures (a signer, a central stand-in on MQTT, gates) and the
web suite's store with one user per role."""

from tests.gate_agent.conftest import gate_factory, probe, signer, site, turnstile_factory  # noqa: F401
from tests.web.conftest import web_ctx  # noqa: F401
