"""The wire contract that gates and the central share.

Three things live here: the MQTT topic tree and message schemas (`protocol.topics`,
`protocol.messages`), the signed ticket code (`protocol.ticket_code`) and the entry rules
(`protocol.rules`, with the refusal reasons in `protocol.reasons`). A reader can learn the whole
contract from this package alone. It imports only the standard library, `cryptography`, `msgspec`
and `uuid6`: never `gate_agent`, `central`, `drivers` or `biometrics`.

Besides the contract, `protocol.host` holds the two helpers both long-running programs need from their
machine (systemd notification and watchdog, a consistent copy of a live SQLite file), written once:
the gate and the central may not import each other.
"""
