"""Simulators: each speaks its device's real protocol over the same kind of transport.

Used by the tests and by the demo. Modules (import the one you need; pymodbus is only pulled in by
`turnstile_sim`):

- `drivers.sim.serial_sim`: `PtyPair`, `PtyLink` (pseudo-terminals standing in for cables),
  `QrScannerSim`, `SerialRfidReaderSim`
- `drivers.sim.turnstile_sim`: `TurnstileSimulator` (pymodbus server over TCP or RTU on a pty)
- `drivers.sim.idcard_sim`: `IdCardReaderSim` (GA 467 frames on a pty)
- `drivers.sim.fingerprint_sim`: `FingerprintModuleSim` (AS608 packets on a pty)
- `drivers.sim.virtual_card`: `VirtualContactlessCard` (a card for vpcd, the vsmartcard virtual reader)
"""
