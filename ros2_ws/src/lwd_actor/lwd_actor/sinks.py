"""Where recorded episodes go, and where newer policies come from (ROS-free wiring).

`sink: directory` stores episodes in a local `EpisodeStore` (the learner's format)
through `core.journal.JournalSink`, which journals every step under
`<store_dir>/journal/<robot_id>/` while it is recorded, and has no policy source. `sink: bridge` uses the transport's `BridgeClient`: its
`EpisodeStream` (spool + ZeroMQ stream) records the episodes and its
`PolicyFetcher` is the `PolicySource` that `PolicySwitch` asks at episode ends.
With CURVE key files (`lwd_learner_bridge.keys gen`: the robot's `<robot_id>.key_secret`
and the bridge's public `bridge.key`) the link is encrypted and the bridge admits the
robot only if its public key is in its allowlist under the same robot id.

Episodes a killed actor left unfinished are stored at the next start (`SinkBundle.recovered`
says which): the directory sink from its journal; the bridge sink's spool holds every chunk
of 15 steps the stream had written, and `finish_interrupted_episodes` gives such an episode
an end frame (failure, reason `interrupted`) before the stream starts, so it is sent like
any other (the transport alone would set it aside in `orphaned/`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwd_actor.core.journal import INTERRUPTED, JournalSink
from lwd_actor.core.policy_switch import PolicySource
from lwd_common.episode import (
    Episode,
    EpisodeOutcome,
    EpisodeSink,
    Label,
    content_hash,
    meta_from_dict,
    outcome_to_dict,
)
from lwd_common.store import EpisodeStore
from lwd_description.robot import RobotDescription


@dataclass
class SinkBundle:
    sink: EpisodeSink
    policy_source: PolicySource | None = None
    closer: Callable[[], None] | None = None
    describe: str = ""
    stats: Callable[[], dict[str, Any]] | None = None
    recovered: list[str] = field(default_factory=list)  # unfinished episodes of an earlier run, now stored


def curve_files(secret_key_file: str, bridge_public_key_file: str) -> tuple[str, str]:
    """Both CURVE key files or neither; each must exist. ValueError says what is wrong."""
    if bool(secret_key_file) != bool(bridge_public_key_file):
        raise ValueError(
            "CURVE needs both curve_secret_key_file (this robot's <robot_id>.key_secret) and "
            "bridge_public_key_file (the bridge's public .key), or neither"
        )
    for name, path in (
        ("curve_secret_key_file", secret_key_file),
        ("bridge_public_key_file", bridge_public_key_file),
    ):
        if path and not Path(path).is_file():
            raise ValueError(f"{name} {path} does not exist")
    return secret_key_file, bridge_public_key_file


def make_sink(
    kind: str,
    robot_id: str,
    store_dir: str,
    bridge_endpoint: str,
    spool_dir: str,
    curve_secret_key_file: str = "",
    bridge_public_key_file: str = "",
    robot: RobotDescription | None = None,
    spool_caps_mib: tuple[int, int, int] = (4096, 256, 256),
) -> SinkBundle:
    """The sink (and policy source) of kind `directory` or `bridge`; CURVE keys apply to `bridge`.
    `robot` (default the G1): the bridge sink tells the bridge its description's config hash.
    `spool_caps_mib`: the bridge spool's caps (episodes/, rejected/, orphaned/; 0: none), see
    lwd_common.transport.spool."""
    if kind == "directory":
        if not store_dir:
            raise ValueError("sink 'directory' needs store_dir")
        store = EpisodeStore(store_dir)
        sink = JournalSink(store, Path(store_dir) / "journal", robot_id)
        return SinkBundle(
            sink,
            closer=sink.close,
            describe=f"directory {store_dir}",
            recovered=[r.message for r in sink.recovered],
        )
    if kind == "bridge":
        if not (bridge_endpoint and spool_dir):
            raise ValueError("sink 'bridge' needs bridge_endpoint and spool_dir")
        try:
            from lwd_common.transport import BridgeClient, ClientConfig, protocol
        except ImportError as exc:  # the transport is a separate component; say what is missing
            raise ValueError(f"sink 'bridge' unavailable: {exc}") from exc
        secret, public = curve_files(curve_secret_key_file, bridge_public_key_file)
        if any(c < 0 for c in spool_caps_mib):
            raise ValueError(f"spool caps must be >= 0 MiB (0: no cap), got {spool_caps_mib}")
        spool_max, rejected_max, orphaned_max = (c << 20 for c in spool_caps_mib)
        recovered = finish_interrupted_episodes(spool_dir, robot_id)
        client = BridgeClient(
            ClientConfig(
                endpoint=bridge_endpoint,
                robot_id=robot_id,
                spool_dir=spool_dir,
                curve_secret_key_file=secret,
                server_public_key_file=public,
                config_hash=protocol.robot_config_hash(robot) if robot else protocol.config_hash(),
                spool_max_bytes=spool_max,
                rejected_max_bytes=rejected_max,
                orphaned_max_bytes=orphaned_max,
            )
        )
        security = f", CURVE with {secret}" if secret else ", unencrypted"
        return SinkBundle(
            client,
            client.fetcher,
            client.close,
            describe=f"bridge {bridge_endpoint} (spool {spool_dir}{security})",
            stats=client.stats,
            recovered=recovered,
        )
    raise ValueError(f"unknown sink {kind!r} (want 'directory' or 'bridge')")


def finish_interrupted_episodes(spool_dir: str, robot_id: str) -> list[str]:
    """Give every episode of `robot_id` that a killed actor left in the bridge spool without an end
    frame one (failure, reason `interrupted`, the steps of its spooled chunks), so the stream sends it.

    Only the frames from seq 0 on without a gap are kept (a later frame after a gap is deleted);
    an episode whose frames cannot be read is left alone (the transport moves it to `orphaned/`).
    Returns one line per episode finished."""
    from lwd_common.transport import protocol
    from lwd_common.transport.spool import Spool

    spool = Spool(spool_dir)
    done = []
    for ep in spool.scan():
        if ep.end_seq is not None or 0 not in ep.seqs:
            continue
        last = 0
        while last + 1 in ep.seqs:
            last += 1
        try:
            begin = protocol.decode(spool.read(ep.episode_id, 0), max_bytes=1 << 62, limits=None)
            meta = meta_from_dict(begin["meta"])
            if meta.robot_id != robot_id or begin["t"] != "ep_begin":
                continue
            chunks = [
                protocol.check_chunk(
                    protocol.decode(spool.read(ep.episode_id, seq), max_bytes=1 << 62, limits=None)["steps"],
                    len(meta.joint_names),
                )
                for seq in range(1, last + 1)
            ]
            n = sum(len(c["step"]) for c in chunks)
            outcome = EpisodeOutcome(
                label=Label.FAILURE,
                num_steps=n,
                reason=INTERRUPTED,
                note=f"the actor stopped without ending the episode (killed or crashed) after {n} "
                "spooled steps; finished from the spool at the next start",
            )
            digest = content_hash(Episode.from_columns(meta, chunks, outcome))
        except (ValueError, TypeError, KeyError, OSError):
            continue
        for seq in ep.seqs:
            if seq > last:  # after a gap: the bridge would wait for the missing frame forever
                (spool.episodes_dir / ep.episode_id / f"{seq:08d}.frm").unlink(missing_ok=True)
        frame = protocol.encode(
            "ep_end",
            episode_id=ep.episode_id,
            seq=last + 1,
            outcome=outcome_to_dict(outcome),
            num_steps=n,
            content_hash=digest,
            ended_at=time.time(),
        )
        spool.write(ep.episode_id, last + 1, frame, is_end=True)
        done.append(f"episode {ep.episode_id}: {n} spooled steps, never ended: sent as failure (interrupted)")
    return done
