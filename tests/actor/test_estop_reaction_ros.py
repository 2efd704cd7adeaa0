"""The e-stop's reaction time while the actor's input callbacks are flooded, over real DDS; and, in
one process, the e-stop served by its own thread while the input executor is stuck.

Fake robot (compressed cameras), actor, a camera flood and an e-stop presser in separate processes.
The flood sends every camera the slowest PNG the actor still decodes (4096 x 4096, 16-bit RGBA,
interlaced: a few hundred ms each on receipt), so the sensor executor is busy all the time and the
inputs go stale. The e-stop is served on its own thread (docs/actor.md "Lifecycle and threads"), so
the commands must still stop within `estop_hold_s` + one control tick of the press. Before that, an
e-stop pressed during such a flood waited behind the decoding (issue 28: 4.09 s instead of 0.5 s).
"""

from __future__ import annotations

import json
import time

import actorprocs
import numpy as np
import pytest
from conftest import write_urdf
from estop_timing import slow_png
from test_actor_node_params import configure, context  # noqa: F401 - the fixture

from lwd_actor.core.observation import MAX_IMAGE_PIXELS, compressed_image
from lwd_actor.executors import GroupExecutor, SafetyThread
from lwd_common.store import EpisodeStore
from lwd_testing.models import build_policy
from rosutil import REPO, ros_processes, wait_for

pytestmark = pytest.mark.ros

NS = "/robot0"
TIMING = str(REPO / "tests/actor/estop_timing.py")
HOLD_S = 0.5  # estop_hold_s as shipped
TICK_S = 1 / 30
# Delivery and scheduling on a shared 2-core machine that the flood itself loads. Measured now: latched
# within 15 ms, the last command 0.48-0.50 s after the press. Before the fix, under this flood: latched
# 0.11-1.58 s, last command 0.61-2.06 s (2 presses in 20 within these bounds; issue 28: 4.09 s).
SLACK_S = 0.3


def test_an_estop_stops_the_commands_within_the_hold_and_a_tick_while_the_cameras_are_flooded(tmp_path):
    policy = build_policy(tmp_path / "policy.onnx")
    urdf = write_urdf(tmp_path / "robot.urdf")
    presses = tmp_path / "presses.jsonl"
    with ros_processes(tmp_path) as procs:
        procs.python(
            "robot",
            "-m",
            "lwd_testing.fake_robot_node",
            "--ros-args",
            "-r",
            f"__ns:={NS}",
            "-p",
            "compressed:=true",
            "-p",
            "rate_hz:=10.0",  # its own small frames: nearly every frame the actor takes is a flood frame
        )
        actorprocs.start_actor(
            procs,
            "actor",
            NS,
            policy,
            urdf,
            tmp_path / "store",
            "compressed_cameras:=all",
            "record_height:=64",  # 4096 x 4096 frames are kept (and recorded) at 64 x 64
            "record_width:=64",
            "hold_when_idle:=true",  # after the first press ends the episode, presses hit a holding robot
            f"estop_hold_s:={HOLD_S}",
        )
        started = actorprocs.episode_cli(procs, "start", NS, "--retry-s", "60", "start", "--task", "pick")
        assert started["accepted"], started["message"] + procs.log("actor")
        procs.python("flood", TIMING, "flood", "--hz", "30", "--ros-args", "-r", f"__ns:={NS}")
        # the flood holds the inputs up: the running episode holds for stale inputs
        assert wait_for(lambda: "holding: stale inputs" in procs.log("actor"), 60), procs.log("flood")
        presser = procs.python(
            "presser",
            TIMING,
            "press",
            "--presses",
            "3",
            "--timeout-s",
            "20",
            "--out",
            str(presses),
            "--ros-args",
            "-r",
            f"__ns:={NS}",
        )
        presser.wait(timeout=240)
        results = [json.loads(line) for line in presses.read_text().splitlines()] if presses.exists() else []
        log = procs.log("presser") + "\n" + procs.log("actor")[-4000:]
        assert len(results) == 3 and all("error" not in r for r in results), f"{results}\n{log}"
        assert "holding: stale inputs" in procs.log("actor")
        store = EpisodeStore(tmp_path / "store")  # the first press aborted the episode
        assert wait_for(lambda: started["episode_id"] in store.ids(), 30), procs.log("actor")
        assert store.get(started["episode_id"]).outcome.reason == "estop"
        for r in results:
            assert not r["timed_out"] and r["commands_after"] > 0, r  # it was commanding, then stopped
            assert r["latched_s"] is not None and r["latched_s"] <= TICK_S + SLACK_S, r
            assert r["silenced_s"] <= HOLD_S + TICK_S + SLACK_S, (r, log)
        assert all(r["reset"] for r in results[:-1]), results


def test_the_flood_frame_is_the_largest_the_actor_decodes():
    """The flood's frame really is accepted and decoded (not refused from its header)."""
    img = compressed_image("bgr8; png compressed bgr8", slow_png())
    assert img.shape == (4096, 4096, 3) and 4096 * 4096 == MAX_IMAGE_PIXELS


def test_the_safety_thread_latches_the_estop_and_sends_the_hold_while_the_input_executor_is_stuck(
    context,  # noqa: F811 - the fixture
    tmp_path,
):
    from rclpy.event_handler import PublisherEventCallbacks
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Bool, Float64MultiArray

    n, ok = configure(context, tmp_path, hold_when_idle=True)
    assert ok
    button = Node("estop_button", namespace="/robot0", context=context)
    # volatile: the actor's transient-local e-stop subscription is incompatible with it (the others hear it)
    quiet = PublisherEventCallbacks(incompatible_qos=lambda info: None)
    pub = button.create_publisher(Bool, "estop", 10, event_callbacks=quiet)
    commands: list[list[float]] = []
    button.create_subscription(
        Float64MultiArray, "joint_commands", lambda m: commands.append(list(m.data)), 10
    )
    peer = SingleThreadedExecutor(context=context)
    peer.add_node(button)
    inputs = GroupExecutor(lambda group: group is not n.safety_group, context=context)
    inputs.add_node(n)  # what `main` spins for the sensors; here as if stuck in a callback, but for below
    safety = SafetyThread(n)
    q = np.linspace(-0.5, 0.5, 16)
    n._core.last_command = q  # it was commanding this (hold_when_idle: repeated outside episodes)
    n._active = True  # but no control loop runs: a command seen below is the e-stop callback's own

    def spin_until(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            peer.spin_once(timeout_sec=0.02)
        return predicate()

    try:
        assert spin_until(
            lambda: pub.get_subscription_count() > 0 and n.outputs.command_pub.get_subscription_count() > 0,
            15,
        )
        pub.publish(Bool(data=True))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the input executor does not serve the e-stop
            inputs.spin_once(timeout_sec=0.05)
        assert not n._core.estop.engaged and not commands
        safety.start()
        assert spin_until(lambda: bool(commands), 10), "no hold sent"
        assert n._core.estop.engaged and n._core.estop.input_engaged
        assert len(commands) == 1 and np.allclose(commands[0], q)  # the hold, at once, without a tick
    finally:
        safety.stop(timeout=2.0)
        n._active = False
        n._teardown()
        inputs.shutdown()
        peer.shutdown()
        button.destroy_node()
        n.destroy_node()
