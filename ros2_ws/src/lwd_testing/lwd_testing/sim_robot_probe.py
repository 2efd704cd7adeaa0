"""A separate-process ROS client that exercises `sim_robot` and prints what it saw as JSON (used by tests).

python -m lwd_testing.sim_robot_probe --ns /robot0 --duration 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES
from lwd_msgs.msg import TaskStatus
from lwd_msgs.srv import StartEpisode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", default="/robot0")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=40.0)
    ap.add_argument("--delta", type=float, default=0.3, help="command offset for left_arm_joint1 (rad)")
    ap.add_argument("--instruction", default="")
    ap.add_argument("--trajectory", action="store_true", help="command via joint_trajectory instead")
    args = ap.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("sim_probe")
    ns = args.ns.rstrip("/")
    states: list[tuple[float, float, list[float]]] = []
    images: dict[str, list[tuple[int, int, str]]] = {c: [] for c in CAMERA_NAMES}
    statuses: list[TaskStatus] = []
    clocks: list[float] = []
    node.create_subscription(
        JointState,
        f"{ns}/joint_states",
        lambda m: states.append(
            (time.monotonic(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, list(m.position))
            if list(m.name) == list(JOINT_NAMES)
            else None
        ),
        10,
    )
    for cam in CAMERA_NAMES:
        node.create_subscription(
            Image,
            f"{ns}/camera/{cam}/image_raw",
            lambda m, c=cam: images[c].append((m.height, m.width, m.encoding)),
            qos_profile_sensor_data,
        )
    node.create_subscription(TaskStatus, f"{ns}/task_status", statuses.append, 10)
    node.create_subscription(
        ClockMsg, "/clock", lambda m: clocks.append(m.clock.sec + m.clock.nanosec * 1e-9), 10
    )
    pub = node.create_publisher(Float64MultiArray, f"{ns}/joint_commands", 10)
    traj_pub = node.create_publisher(JointTrajectory, f"{ns}/joint_trajectory", 10)
    client = node.create_client(StartEpisode, f"{ns}/sim_robot/reset")
    result: dict = {"ok": False}
    deadline = time.monotonic() + args.timeout
    try:
        while not states and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        if not states:
            result["error"] = "no joint_states"
            return 1
        if not client.wait_for_service(timeout_sec=max(1.0, deadline - time.monotonic())):
            result["error"] = "no reset service"
            return 1
        fut = client.call_async(StartEpisode.Request(task="", instruction=args.instruction))
        rclpy.spin_until_future_complete(node, fut, timeout_sec=20)
        resp = fut.result()
        result["reset_accepted"] = bool(resp.accepted)
        result["reset_message"] = resp.message
        for _ in range(5):
            rclpy.spin_once(node, timeout_sec=0.05)
        start_q = np.array(states[-1][2])
        target = start_q.copy()
        target[0] += args.delta
        states.clear()
        for v in images.values():
            v.clear()
        t0 = time.monotonic()
        if args.trajectory:  # one trajectory: the first joint only, reaching the target after 1 s
            point = JointTrajectoryPoint(positions=[float(target[0])])
            point.time_from_start.sec = 1
            traj_pub.publish(JointTrajectory(joint_names=[JOINT_NAMES[0]], points=[point]))
        while time.monotonic() - t0 < args.duration:
            if not args.trajectory:
                pub.publish(Float64MultiArray(data=target.tolist()))
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.01)
        wall = time.monotonic() - t0
        stamps = np.array([s[1] for s in states])
        result.update(
            ok=True,
            joint_state_count=len(states),
            wall_s=wall,
            stamp_dt_median=float(np.median(np.diff(stamps))) if len(stamps) > 2 else None,
            start_q0=float(start_q[0]),
            final_q0=float(states[-1][2][0]) if states else None,
            target_q0=float(target[0]),
            other_joints_moved=float(np.max(np.abs(np.array(states[-1][2])[1:14] - start_q[1:14])))
            if states
            else None,
            images={c: {"count": len(v), "shape": list(v[-1]) if v else None} for c, v in images.items()},
            status_count=len(statuses),
            status_task=statuses[-1].task if statuses else None,
            status_instruction=statuses[-1].instruction if statuses else None,
            status_subtasks_total=int(statuses[-1].subtasks_total) if statuses else None,
            clock_count=len(clocks),
            clock_increasing=bool(
                len(clocks) > 2 and all(b >= a for a, b in zip(clocks, clocks[1:], strict=False))
            ),
        )
        return 0
    finally:
        print(json.dumps(result), flush=True)
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
