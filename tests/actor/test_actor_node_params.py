"""The actor node's parameters reach the core: a real rclpy lifecycle node in this process, configured
against a real ONNX policy (no DDS peers needed), its own context and domain."""

from __future__ import annotations

import os
import time

import pytest
import rclpy
from rclpy.parameter import Parameter

from lwd_actor.actor_node import ActorNode, time_msg
from lwd_testing.models import build_policy
from rosutil import unique_domain_id

pytestmark = pytest.mark.ros


@pytest.fixture
def context(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=unique_domain_id())
    yield ctx
    ctx.try_shutdown()


def node(context, namespace: str = "/", **params) -> ActorNode:
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return ActorNode(context=context, namespace=namespace, parameter_overrides=overrides)


def test_robot_id_defaults_to_the_namespace(context):
    a, b = node(context, "/robot_a"), node(context, "/robot_b")
    try:
        assert (a.robot_id(), b.robot_id()) == ("robot_a", "robot_b")
        named = node(context, "/robot_c", robot_id="cell3")
        assert named.robot_id() == "cell3"
        named.destroy_node()
        root = node(context)
        assert root.robot_id() == os.uname().nodename
        root.destroy_node()
    finally:
        a.destroy_node()
        b.destroy_node()


def test_jpeg_quality_rate_and_camera_size_reach_the_policy_runtime(context):
    n = node(context, "/robot0", jpeg_quality=55, control_hz=15.0, image_height=480, image_width=640)
    try:
        cfg = n.params.runtime_config()
        assert (cfg.jpeg_quality, cfg.control_hz, cfg.camera_hw) == (55, 15.0, (480, 640))
    finally:
        n.destroy_node()


def configure(context, tmp_path, **params) -> tuple[ActorNode, bool]:
    policy = build_policy(tmp_path / "p.onnx", image_size=32)
    n = node(
        context,
        "/robot0",
        autostart=False,
        policy_path=str(policy),
        store_dir=str(tmp_path / "store"),
        **params,
    )
    ok = n.on_configure(None).name == "SUCCESS"
    return n, ok


def test_configure_refuses_a_policy_that_does_not_fit_the_configured_cameras(context, tmp_path):
    n, ok = configure(context, tmp_path, image_height=480, image_width=640)
    try:
        assert not ok and n._core is None
    finally:
        n.destroy_node()


@pytest.mark.parametrize(
    ("params", "ok"),
    [
        ({"curve_secret_key_file": "robot0.key_secret"}, False),  # half a key pair
        ({"label_deadline_outcome": "success"}, False),
        (
            {
                "label_deadline_s": 5.0,
                "label_deadline_outcome": "unlabelled",
                "estop_hold_s": 0.1,
                "watchdog_control_stall_s": 0.5,
                "watchdog_inference_stall_s": 2.0,
            },
            True,
        ),
    ],
)
def test_safety_and_label_parameters_are_checked_and_reach_the_core(context, tmp_path, params, ok):
    n, configured = configure(
        context,
        tmp_path,
        sink="bridge" if "curve_secret_key_file" in params else "directory",
        spool_dir=str(tmp_path / "spool"),
        **params,
    )
    try:
        assert configured is ok
        if ok:
            core = n._core
            assert core.fsm.label_deadline_s == 5.0 and core.fsm.label_timeout_reason == "unlabelled"
            assert core.estop.hold_s == 0.1
            assert (core.watchdog.config.control_stall_s, core.watchdog.config.inference_stall_s) == (
                0.5,
                2.0,
            )
            n._teardown()
    finally:
        n.destroy_node()


def test_spool_caps_reach_the_bridge_spool_and_its_counters_reach_diagnostics(context, tmp_path):
    n, ok = configure(
        context,
        tmp_path,
        sink="bridge",
        bridge_endpoint="tcp://127.0.0.1:9",  # nobody there: the spool only fills
        spool_dir=str(tmp_path / "spool"),
        spool_max_mib=3,
        spool_rejected_max_mib=2,
        spool_orphaned_max_mib=0,
    )
    try:
        assert ok
        assert n._sinks is not None
        spool = n._sinks.sink.spool
        assert spool.caps == {"episodes": 3 << 20, "rejected": 2 << 20, "orphaned": 0}
        values = n.diagnostics.spool_values()
        assert values["spool_bytes"] == 0 and values["spool_dropped_episodes"] == 0
        assert "spool_errors" in values
        n._teardown()
    finally:
        n.destroy_node()
    bad, ok = configure(context, tmp_path, sink="bridge", spool_dir=str(tmp_path / "spool"), spool_max_mib=-1)
    try:
        assert not ok
    finally:
        bad.destroy_node()


def test_an_engaged_estop_survives_cleanup_and_reconfiguration(context, tmp_path):
    n, ok = configure(context, tmp_path)
    try:
        assert ok
        n._core.engage_estop("light curtain", n.now_s())
        n.on_cleanup(None)
        assert n.on_configure(None).name == "SUCCESS"
        assert n._core.estop.engaged and n._core.estop.reason == "light curtain"
        assert n._core.estop.command(n.now_s()) is None  # nothing to hold after a reconfiguration
        n._core.reset_estop()
        n._teardown()
    finally:
        n.destroy_node()


def test_a_latched_estop_published_before_the_actor_started_engages_it(context, tmp_path):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile
    from std_msgs.msg import Bool

    button = Node("estop_button", namespace="/robot0", context=context)
    pub = button.create_publisher(
        Bool, "estop", QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    )
    pub.publish(Bool(data=True))  # pressed (and latched) before the actor exists
    n, ok = configure(context, tmp_path)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(button)
    executor.add_node(n)
    try:
        assert ok
        deadline = time.monotonic() + 15
        while not n._core.estop.engaged and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert n._core.estop.engaged and n._core.estop.input_engaged
        n._teardown()
    finally:
        executor.shutdown()
        button.destroy_node()
        n.destroy_node()


def test_time_stamps_keep_the_carry_of_rounding():
    carried = time_msg(1.9999999996)
    assert (carried.sec, carried.nanosec) == (2, 0)
    plain = time_msg(12.25)
    assert (plain.sec, plain.nanosec) == (12, 250_000_000)
