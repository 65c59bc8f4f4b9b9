"""The central's MQTT side: everything that talks to the broker.

    link.py           MqttLink: one paho client (and the ingest's lean receive path), publish, subscribe
    ingest_worker.py  IngestWorker: gate messages into the database in batches, acknowledged after commit
    claim_server.py   ClaimServer: central claims (site policy claim=central), answered at once
    publisher.py      Publisher: deltas and gate configs after commit, occupancy, snapshots, commands
    snapshots.py      SnapshotSender: snapshot requests coalesced per gate, built off the ingest path
    bridge.py         the Mosquitto bridge block of an on-site server

The domain logic these call lives in `central.services`; the bus only moves messages.
"""
