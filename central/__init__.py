"""The central server: the system of record (SQLAlchemy with Alembic migrations), MQTT ingest of
passage events, live occupancy per zone, issuing of signed tickets and annual passes, the web UI and
JSON API (Flask), and scheduled jobs (APScheduler).

Depends on `protocol` and `biometrics`; never on `gate_agent` or `drivers` (the central talks to gates
only over MQTT). Its rooms, each depending only on the ones below it:

    cli.py             `park-central`: run and administer
    app.py             the Flask app factory (one web stack: `web`)
    web/               the pages and the JSON API on one request stack (`web/stack.py`)
    bus/               the MQTT side: link, ingest worker, claim server, publisher, snapshots, bridge
    context.py         what a process shares: config, database, signer, cipher, link, publisher
    services/          the domain: plain functions on a Session, called by web, bus, jobs and CLI alike
    models.py, db.py, migrations/, config.py, keys.py, logs.py, backup.py
"""
