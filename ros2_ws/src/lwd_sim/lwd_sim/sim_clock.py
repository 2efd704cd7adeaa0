"""`sim_clock`: the one owner of /clock for a simulated fleet.

Publishes simulated time advancing at `real_time_factor` x wall time, in steps of
1/`publish_rate_hz` wall seconds. Every other node runs with use_sim_time:=true
and so ticks with it (sim_robot's 30 Hz control timer included). Start exactly
one per ROS domain.

    python -m lwd_sim.sim_clock --ros-args -p real_time_factor:=0.5
"""

from __future__ import annotations

import sys
import time

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg

from lwd_sim.node_main import run_node
from lwd_sim.sim_robot_node import _time_msg


class SimClockNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_clock")
        self.rtf = float(self.declare_parameter("real_time_factor", 1.0).value)
        rate = float(self.declare_parameter("publish_rate_hz", 200.0).value)
        if self.rtf <= 0 or rate <= 0:
            raise ValueError("real_time_factor and publish_rate_hz must be > 0")
        self.pub = self.create_publisher(ClockMsg, "/clock", 10)
        self.sim_time = 0.0
        self.last_wall = time.monotonic()
        self.create_timer(1.0 / rate, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _tick(self) -> None:
        now = time.monotonic()
        self.sim_time += (now - self.last_wall) * self.rtf
        self.last_wall = now
        self.pub.publish(ClockMsg(clock=_time_msg(self.sim_time)))


def main(args: list[str] | None = None) -> int:
    return run_node("sim_clock", SimClockNode, args)


if __name__ == "__main__":
    sys.exit(main())
