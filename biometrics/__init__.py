"""Face and fingerprint templates: enrolment checks, 1:1 verification, 1:N identification.

Used by the central (enrolment) and by gates (verification), so it imports neither Flask nor a
database nor `central`/`gate_agent`. Templates are personal data: `biometrics.protect` encrypts them at
rest with a key from configuration, and nothing here logs a template.
"""
