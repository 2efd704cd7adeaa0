"""The shared `main` of our plain rclpy nodes (the simulator's, the test fixtures'): clean Ctrl-C, one-line errors.

Here, not in lwd_common, which is ROS-free; the actor has its own lifecycle main."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(
    name: str,
    make: Callable[[], Node],
    args: list[str] | None = None,
    spin: Callable[[Node], None] = rclpy.spin,
) -> int:
    """Create the node with `make`, `spin` it, shut down cleanly; exit code 2 on bad parameters."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = make()
        spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as e:  # bad parameters: say which, no traceback
        print(f"{name}: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
