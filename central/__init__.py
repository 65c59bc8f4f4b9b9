"""The central server: the system of record (SQLAlchemy with Alembic migrations), MQTT ingest of
passage events, live occupancy per zone, issuing of signed tickets and annual passes, the web UI and
JSON API (Flask), and scheduled jobs (APScheduler).

Depends on `protocol` and `biometrics`; never on `gate_agent` or `drivers` (the central talks to gates
only over MQTT).
"""
