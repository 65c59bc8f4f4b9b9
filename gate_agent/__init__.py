"""The edge program at each turnstile: read credentials, decide locally, drive the turnstile, store
and forward passage events.

Depends on `drivers`, `biometrics` and `protocol` only. A gate box installs the `gate` extra, without
Flask, SQLAlchemy or PostgreSQL client libraries: nothing here may import `central` or those packages.
"""
