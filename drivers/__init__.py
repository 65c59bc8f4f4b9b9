"""Device drivers: bytes to and from the hardware at a gate, and a simulator for each.

One module per device kind (turnstile controller over Modbus, QR scanner, national ID card reader,
RFID reader over PC/SC or serial, fingerprint module, camera). A driver yields plain facts (a code, an
ID number, a card UID, a sensor change) and raises its own small family of errors carrying the port
(`drivers.errors`). It knows nothing of tickets: it must not import `protocol`, `gate_agent`,
`central` or `biometrics`, and could be published on its own.
"""
