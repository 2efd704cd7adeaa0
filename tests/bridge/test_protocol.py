"""The wire format: what a frame may hold and how bad frames are refused."""

import msgpack
import numpy as np
import pytest
from bridgeutil import make_steps

from lwd_common.transport import protocol
from lwd_common.transport.protocol import ProtocolError
from lwd_description.robot import CAMERA_NAMES


def test_frame_round_trips_fields_and_arrays():
    steps = make_steps(5, seed=1)
    frame = protocol.encode(
        "ep_chunk", episode_id="r0-e1", seq=3, steps=protocol.steps_to_chunk(steps, CAMERA_NAMES)
    )
    msg = protocol.decode(frame)
    assert (msg["t"], msg["v"], msg["seq"]) == ("ep_chunk", protocol.SCHEMA_VERSION, 3)
    back = protocol.chunk_to_steps(msg["steps"], CAMERA_NAMES)
    assert [s.images for s in back] == [s.images for s in steps]
    np.testing.assert_array_equal(back[2].joint_pos, steps[2].joint_pos.astype(np.float32))


def test_truncated_frame_is_refused_as_malformed():
    frame = protocol.encode("policy_query", current_version="v000001")
    with pytest.raises(ProtocolError, match="malformed") as err:
        protocol.decode(frame[:-3])
    assert err.value.code == "malformed"


def test_field_of_wrong_type_is_refused_naming_the_field():
    bad = msgpack.packb(
        {"v": protocol.SCHEMA_VERSION, "t": "ep_begin", "episode_id": 7, "seq": 0, "meta": {}}
    )
    with pytest.raises(ProtocolError, match="'episode_id' must be str"):
        protocol.decode(bad)


def test_bool_is_not_accepted_as_int():
    bad = msgpack.packb({"v": protocol.SCHEMA_VERSION, "t": "ack", "episode_id": "e", "seq": True})
    with pytest.raises(ProtocolError, match="'seq' must be int"):
        protocol.decode(bad)


def test_unknown_message_type_is_refused():
    with pytest.raises(ProtocolError, match="unknown message type 'reboot'") as err:
        protocol.decode(msgpack.packb({"v": protocol.SCHEMA_VERSION, "t": "reboot"}))
    assert err.value.code == "unknown_type"


def test_other_schema_version_is_refused_with_both_versions_named():
    frame = msgpack.packb({"v": 99, "t": "status_query"})
    with pytest.raises(ProtocolError, match="99 not supported .*speaks 1") as err:
        protocol.decode(frame)
    assert err.value.code == "schema_version"


def test_frame_over_the_size_limit_is_refused_before_parsing():
    frame = protocol.encode("policy_data", version="v000001", offset=0, total=5000, data=b"x" * 5000)
    with pytest.raises(ProtocolError, match="exceeds limit 1000") as err:
        protocol.decode(frame, max_bytes=1000)
    assert err.value.code == "frame_too_large"


def test_non_map_frame_is_refused():
    with pytest.raises(ProtocolError, match="must be a map"):
        protocol.decode(msgpack.packb([1, 2, 3]))


def test_robot_cannot_send_bridge_message_types():
    frame = protocol.encode("committed", episode_id="e", content_hash="0" * 64, snapshot=1, duplicate=False)
    with pytest.raises(ProtocolError, match="not accepted here"):
        protocol.decode(frame, allowed=protocol.ROBOT_TYPES)


def test_chunk_with_wrong_joint_width_is_refused():
    chunk = protocol.steps_to_chunk(make_steps(3, seed=2), CAMERA_NAMES)
    chunk["joint_pos"] = np.zeros((3, 15), np.float32)
    with pytest.raises(ProtocolError, match="joint_pos"):
        protocol.chunk_to_steps(chunk, CAMERA_NAMES)


def test_chunk_missing_camera_frames_is_refused():
    chunk = protocol.steps_to_chunk(make_steps(3, seed=2), CAMERA_NAMES)
    chunk["images"]["head"] = chunk["images"]["head"][:2]
    with pytest.raises(ProtocolError, match="images\\['head'\\]"):
        protocol.chunk_to_steps(chunk, CAMERA_NAMES)


def test_config_hash_differs_when_cameras_differ():
    assert protocol.config_hash() != protocol.config_hash(camera_names=("head",))
    assert protocol.config_hash() == protocol.config_hash()
