"""Face and fingerprint templates: enrolment checks, 1:1 verification, 1:N identification.

Used by the central (enrolment) and by gates (verification), so it imports neither Flask nor a
database nor `central`/`gate_agent`. Templates are personal data: `biometrics.protect` encrypts them at
rest with a key from configuration, and nothing here logs a template.

`import biometrics` loads nothing heavy: each public name below is imported from its module on first
use, and face_recognition/dlib only when a face is detected or encoded (the `face` extra).

Errors a caller handles:

    EnrolmentRefused        enrol_face: no/several faces, too small, too blurred, unreadable (`.reason`)
    FaceSupportMissing      enrol_face/encode_frame on a box without the `face` extra (an ImportError)
    SlotCapacityError       SlotPlan.compute: more templates than module slots (a ValueError)
    KeyConfigError          load_key/TemplateCipher: the configured key is unusable (a ValueError)
    TemplateDecryptError    TemplateCipher.decrypt: wrong key, holder or kind, or tampered
    TemplateFormatError     check_template: not a face descriptor / AS608 module template (a ValueError)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "DEFAULT_THRESHOLD",
    "Delete",
    "DetectedFace",
    "EnrolmentRefused",
    "FaceIndex",
    "FaceSupportMissing",
    "FaceTemplate",
    "FingerprintTemplate",
    "Forgotten",
    "KeyConfigError",
    "Match",
    "SlotCapacityError",
    "SlotEntry",
    "SlotPlan",
    "Store",
    "TemplateCipher",
    "TemplateDecryptError",
    "TemplateFormatError",
    "apply_operations",
    "check_template",
    "detect_faces",
    "encode_frame",
    "enrol_face",
    "forget_holder",
    "generate_key",
    "load_key",
    "verify",
]

_WHERE = {
    "DEFAULT_THRESHOLD": "face",
    "DetectedFace": "face",
    "EnrolmentRefused": "face",
    "detect_faces": "face",
    "FaceIndex": "face",
    "FaceSupportMissing": "face",
    "FaceTemplate": "face",
    "Match": "face",
    "encode_frame": "face",
    "enrol_face": "face",
    "verify": "face",
    "Delete": "fingerprint",
    "FingerprintTemplate": "fingerprint",
    "SlotCapacityError": "fingerprint",
    "SlotEntry": "fingerprint",
    "SlotPlan": "fingerprint",
    "Store": "fingerprint",
    "apply_operations": "fingerprint",
    "Forgotten": "erasure",
    "forget_holder": "erasure",
    "KeyConfigError": "protect",
    "TemplateCipher": "protect",
    "TemplateDecryptError": "protect",
    "generate_key": "protect",
    "load_key": "protect",
    "TemplateFormatError": "templates",
    "check_template": "templates",
}

if TYPE_CHECKING:
    from .erasure import Forgotten, forget_holder
    from .face import (
        DEFAULT_THRESHOLD,
        DetectedFace,
        EnrolmentRefused,
        FaceIndex,
        FaceSupportMissing,
        FaceTemplate,
        Match,
        detect_faces,
        encode_frame,
        enrol_face,
        verify,
    )
    from .fingerprint import (
        Delete,
        FingerprintTemplate,
        SlotCapacityError,
        SlotEntry,
        SlotPlan,
        Store,
        apply_operations,
    )
    from .protect import KeyConfigError, TemplateCipher, TemplateDecryptError, generate_key, load_key
    from .templates import TemplateFormatError, check_template


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'biometrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
