"""The edge program at each turnstile: read credentials, decide locally, drive the turnstile, store
and forward passage events.

Depends on `drivers`, `biometrics` and `protocol` only. A gate box installs the `gate` extra, without
Flask, SQLAlchemy or PostgreSQL client libraries: nothing here may import `central` or those packages.

`agent.GateAgent` composes the collaborators (decider, claims, arm, passages, announcer, faces,
fingerprints, cache_sync, health, config_state, store, link, readers); none of them imports `agent`.
"""
