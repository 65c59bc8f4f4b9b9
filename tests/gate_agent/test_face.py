"""Annual passes bound to a face: the gate's camera checks the holder (1:1), with real face templates."""

from __future__ import annotations

import pytest

from protocol import messages as m
from tests.gate_agent.conftest import gate_config_for

pytestmark = [pytest.mark.faces, pytest.mark.slow]


@pytest.fixture(scope="module")
def templates(faces_dir):
    pytest.importorskip("face_recognition")
    from biometrics.face import encode_frame

    obama = encode_frame(str(faces_dir / "obama" / "1.jpg"))[0]
    biden = encode_frame(str(faces_dir / "biden" / "1.jpg"))[0]
    return obama.to_bytes(), biden.to_bytes()


def test_pass_holder_matching_the_camera_is_granted_and_another_face_refused(gate_factory, probe, signer, site,
                                                                            faces_dir, templates):
    obama, biden = templates
    camera = {"files": str(faces_dir / "obama" / "2.jpg"), "fps": 20}
    agent, _ = gate_factory(config=gate_config_for(signer, site, "g1", pass_biometric="face"),
                            devices={"camera": camera})
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    probe.delta(m.PassChange(pass_id=81, holder_id="obama", card_uid="0481"),
                m.TemplateChange(holder_id="obama", kind="face", data=obama),
                m.PassChange(pass_id=82, holder_id="biden", card_uid="0482"),
                m.TemplateChange(holder_id="biden", kind="face", data=biden))
    probe.wait(lambda: agent.store.seq == probe.seq)

    granted = agent.present("annual_pass", "0481")
    assert granted.granted and granted.passed == 1
    assert granted.events[0].face_distance is not None and granted.events[0].face_distance < 0.5

    refused = agent.present("annual_pass", "0482")  # Biden's card, Obama at the camera
    assert refused.reason == "not_same_person"
