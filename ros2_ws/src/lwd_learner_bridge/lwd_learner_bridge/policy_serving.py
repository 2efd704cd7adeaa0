"""Policy serving: which policy the fleet is told to run, its bytes in chunks, and what robots loaded.

The served policy is the newest the learner published, unless an operator
pinned one (`policy_admin`, `PolicyStore.pin`). Robots only ever move to a
numerically newer version, so a pin that goes back is served under a name of a
new pin epoch (`served_version`: v000003 in epoch 1 is "v1000000003"), with the
same sha256 and bytes; `info.extra["published_version"]` names the real one.
Before any such pin (epoch 0) robots get exactly what was published. Robots
report loaded versions under the served name; the fleet status shows the
published version and the served name next to it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from lwd_common.policy_store import (
    PolicyInfo,
    PolicyStore,
    published_version,
    served_epoch,
    served_version,
)
from lwd_common.transport import protocol
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.replies import Refusal, Reply
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")
SERVED_INFO_MAX_AGE_S = 1.0


class PolicyServing:
    def __init__(self, config: BridgeConfig, policies: PolicyStore, stats: FleetStats):
        self.config = config
        self.policies = policies
        self.stats = stats
        self._served: tuple[int, float, PolicyInfo | None] | None = None  # (folder mtime, read at, answer)

    def served_info(self) -> PolicyInfo | None:
        """What a robot asking for the latest policy is told (None: nothing published yet).

        Every robot asks several times a second, and the answer lists and reads the policy folder
        (a quarter of the frame loop's time with 64 robots, benchmarks/fleet_stream.py), so it is
        kept until the folder changes: a publish, a mirror or a pin renames a file into it, which
        moves its mtime. It is read again at least every SERVED_INFO_MAX_AGE_S all the same, in
        case two changes fell in one mtime tick."""
        now = time.monotonic()
        stamp = os.stat(self.policies.root).st_mtime_ns
        if (
            self._served is not None
            and self._served[0] == stamp
            and now - self._served[1] < SERVED_INFO_MAX_AGE_S
        ):
            return self._served[2]
        info = self._read_served_info()
        self._served = (stamp, now, info)
        return info

    def _read_served_info(self) -> PolicyInfo | None:
        serving = self.policies.serving()
        if serving is None:
            return None
        info, pin = serving
        if pin.pinned is None and pin.epoch == 0:
            return info  # never pinned: exactly what the learner published
        return dataclasses.replace(
            info,
            version=served_version(info.version, pin.epoch),
            extra={
                **info.extra,
                "published_version": info.version,
                "pinned": pin.pinned is not None,
                "pin_epoch": pin.epoch,
            },
        )

    def query(self) -> Reply:
        """Answer `policy_query` with the served policy's info."""
        try:
            info = self.served_info()
        except (KeyError, ValueError, OSError) as exc:  # e.g. the pinned version vanished from the store
            self.stats.note(logging.ERROR, "policy", "cannot serve a policy: %s", str(exc))
            return Refusal("unknown_policy", f"bridge cannot serve a policy: {exc}")
        return protocol.encode("policy_info", info=info.to_dict() if info else None)

    def fetch(self, msg: dict[str, Any]) -> Reply:
        """Answer `policy_fetch` with one chunk of the policy file behind the (served) version."""
        version, offset = msg["version"], msg["offset"]
        try:
            if served_epoch(version) > self.policies.pin_state().epoch:
                raise KeyError(f"policy {version!r} was never served (no such pin epoch yet)")
            info = self.policies.get(published_version(version))
        except (KeyError, ValueError) as exc:
            return Refusal("unknown_policy", protocol.clip(str(exc)))
        if offset < 0 or offset > info.size or msg["length"] <= 0:
            return Refusal("bad_field", f"offset {offset} / length {msg['length']} outside policy {version}")
        length = min(msg["length"], self.config.policy_chunk_max)
        try:
            with open(self.policies.path_of(info.version), "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as exc:
            return Refusal("unknown_policy", f"policy {version} unreadable: {exc}")
        self.stats.counters["policy_chunks_served"] += 1
        return protocol.encode("policy_data", version=version, offset=offset, total=info.size, data=data)

    def robot_runs(self, robot_id: str, served_as: str) -> None:
        """Record the version a robot runs, as it named it (hello, policy_loaded)."""
        robot = self.stats.robot(robot_id)
        try:
            robot.policy_version = published_version(served_as)
        except ValueError:  # not a store version (a robot running a local file): show it as is
            robot.policy_version = served_as
        robot.policy_served_as = served_as

    def loaded(self, robot_id: str, msg: dict[str, Any]) -> None:
        """A robot reports a policy load: record it; time served -> loaded if it was served while we ran."""
        robot = self.stats.robot(robot_id)
        robot.policy_ok = msg["ok"]
        if not msg["ok"]:
            self.stats.note(
                logging.WARNING,
                "policy_load",
                "robot %s failed to load policy %s: %s",
                robot_id,
                msg["version"],
                msg["message"],
            )
            return
        self.robot_runs(robot_id, msg["version"])
        robot.policy_loaded_at = float(msg["loaded_at"])
        try:
            info = self.policies.get(robot.policy_version)
            pin = self.policies.pin_state()
            epoch = served_epoch(msg["version"])
        except (KeyError, ValueError):
            return
        if epoch == 0:
            since = info.created_at
        elif epoch == pin.epoch:  # an older version re-served: it became available when the epoch began
            since = max(info.created_at, pin.epoch_at)
        else:
            return  # a name from an earlier epoch: we do not know when it was first served
        if since >= self.stats.started_at:  # served before this bridge started: downtime, not latency
            self.stats.policy_latencies.append(max(0.0, robot.policy_loaded_at - since))

    def status(self) -> dict[str, Any]:
        """Newest, pinned and served versions for the fleet status."""
        latest = self.policies.latest()
        out: dict[str, Any] = {"latest_policy": latest.version if latest else None}
        try:
            pin = self.policies.pin_state()
            served = self.served_info()
        except (KeyError, ValueError, OSError) as exc:
            return {
                **out,
                "pinned_policy": None,
                "serving_policy": None,
                "serving_as": None,
                "pin_epoch": None,
                "pin_error": str(exc),
            }
        return {
            **out,
            "pinned_policy": pin.pinned,
            "serving_policy": published_version(served.version) if served else None,
            "serving_as": served.version if served else None,
            "pin_epoch": pin.epoch,
        }
