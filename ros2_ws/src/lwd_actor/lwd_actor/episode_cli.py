"""Call an actor's episode services from a shell (operators, scripts, tests).

    python -m lwd_actor.episode_cli --ns /robot0 start --task pick --instruction "pick up the cube"
    python -m lwd_actor.episode_cli --ns /robot0 stop [--abort] [--reason why]
    python -m lwd_actor.episode_cli --ns /robot0 label --success|--failure [--note text]
    python -m lwd_actor.episode_cli --ns /robot0 lifecycle deactivate|activate|cleanup|configure
    python -m lwd_actor.episode_cli --ns /robot0 estop [--reason why]        # latch the e-stop (service)
    python -m lwd_actor.episode_cli --ns /robot0 reset-estop [--reason who]  # the explicit reset
    python -m lwd_actor.episode_cli --ns /robot0 estop-topic on|off [--best-effort]  # publish on `estop`

Prints the response as one JSON line. `--retry-s` keeps retrying a refused
`start` (e.g. while the actor has no camera frames yet). Exit 0 if accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from std_msgs.msg import Bool

from lwd_msgs.srv import LabelEpisode, StartEpisode, StopEpisode

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
}


def call(node: Node, srv_type, name: str, request, timeout: float):
    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=timeout):
        return None
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    return future.result()


def publish_estop(node: Node, topic: str, value: bool, best_effort: bool, timeout: float) -> bool:
    """Publish `value` on the e-stop topic once a subscriber is there, a few times over ~0.5 s
    (a state, so repeating it is harmless and survives a lost best-effort sample)."""
    reliability = QoSReliabilityPolicy.BEST_EFFORT if best_effort else QoSReliabilityPolicy.RELIABLE
    pub = node.create_publisher(Bool, topic, QoSProfile(depth=10, reliability=reliability))
    deadline = time.monotonic() + timeout
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.1)
    for _ in range(5):
        pub.publish(Bool(data=value))
        rclpy.spin_once(node, timeout_sec=0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", default="/robot0", help="robot namespace")
    p.add_argument("--node", default="actor", help="actor node name")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--retry-s", type=float, default=0.0, help="start: retry a refused start for this long")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--task", required=True)
    s.add_argument("--instruction", default="")
    st = sub.add_parser("stop")
    st.add_argument("--abort", action="store_true")
    st.add_argument("--reason", default="")
    lb = sub.add_parser("label")
    g = lb.add_mutually_exclusive_group(required=True)
    g.add_argument("--success", action="store_true")
    g.add_argument("--failure", action="store_true")
    lb.add_argument("--note", default="")
    lc = sub.add_parser("lifecycle")
    lc.add_argument("transition", choices=sorted(TRANSITIONS))
    for name in ("estop", "reset-estop"):
        sub.add_parser(name).add_argument("--reason", default="")
    et = sub.add_parser("estop-topic")
    et.add_argument("value", choices=["on", "off"])
    et.add_argument(
        "--best-effort", action="store_true", help="publish best-effort (like some e-stop bridges)"
    )
    a = p.parse_args(argv)
    base = f"{a.ns.rstrip('/')}/{a.node}"
    rclpy.init()
    node = Node("lwd_episode_cli")
    try:
        if a.cmd == "lifecycle":
            req = ChangeState.Request(transition=Transition(id=TRANSITIONS[a.transition]))
            resp = call(node, ChangeState, f"{base}/change_state", req, a.timeout)
            ok = resp is not None and resp.success
            print(
                json.dumps(
                    {"accepted": ok, "episode_id": "", "message": a.transition + (" ok" if ok else " failed")}
                ),
                flush=True,
            )
            return 0 if ok else 1
        if a.cmd == "estop-topic":
            ok = publish_estop(node, f"{a.ns.rstrip('/')}/estop", a.value == "on", a.best_effort, a.timeout)
            print(
                json.dumps(
                    {
                        "accepted": ok,
                        "episode_id": "",
                        "message": f"estop {a.value} published" if ok else "no estop subscriber",
                    }
                ),
                flush=True,
            )
            return 0 if ok else 1
        if a.cmd in ("estop", "reset-estop"):
            srv, name = StopEpisode, a.cmd.replace("-", "_")
            req = StopEpisode.Request(abort=True, reason=a.reason)
        elif a.cmd == "start":
            srv, name, req = (
                StartEpisode,
                "start_episode",
                StartEpisode.Request(task=a.task, instruction=a.instruction),
            )
        elif a.cmd == "stop":
            srv, name, req = StopEpisode, "stop_episode", StopEpisode.Request(abort=a.abort, reason=a.reason)
        else:
            srv, name, req = (
                LabelEpisode,
                "label_episode",
                LabelEpisode.Request(success=a.success, note=a.note),
            )
        deadline = time.monotonic() + a.retry_s
        while True:
            resp = call(node, srv, f"{base}/{name}", req, a.timeout)
            if resp is not None and (resp.accepted or time.monotonic() >= deadline):
                break
            if resp is None and time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        if resp is None:
            print(json.dumps({"accepted": False, "message": f"no response from {base}/{name}"}), flush=True)
            return 1
        print(
            json.dumps({"accepted": resp.accepted, "episode_id": resp.episode_id, "message": resp.message}),
            flush=True,
        )
        return 0 if resp.accepted else 1
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
