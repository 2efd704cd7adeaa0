"""Entry points: the offline CLI, ONNX export from a checkpoint, online training that reads the
bridge's store, publishes policies through PolicyStore and resumes after a stop."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import threading

import numpy as np
import onnx
import pytest
import toytask
from test_learning import small_config

from lwd_common import policy_io
from lwd_common.episode import EpisodeKind
from lwd_common.policy_store import PolicyStore
from lwd_common.process import die_with_parent
from lwd_common.store import EpisodeStore
from lwd_learner.config import PolicyConfig
from lwd_learner.train import run_offline, run_online
from lwd_learner.training_plot import read_series


def tiny_config():
    cfg = small_config(0)
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, policy=PolicyConfig(hidden=(32,))),
        qam=dataclasses.replace(cfg.qam, flow_steps=3),  # plumbing tests: fewer unrolled steps compile faster
        train=dataclasses.replace(
            cfg.train, batch_size=8, bc_steps=6, rl_steps=4, log_every=2, ckpt_every=5, publish_every=5
        ),
    )


def _store(path, episodes):
    store = EpisodeStore(path)
    for e in episodes:
        store.put(e)
    store.commit_snapshot()
    return store


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline")
    _store(root / "store", toytask.mixed_dataset(0, n_demo=3, n_rollout=4, n_play=2))
    run_offline(root / "store", root / "run", tiny_config(), progress=False)
    return root


def test_offline_run_writes_checkpoint_metrics_and_contract_policy(offline_run):
    run = offline_run / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"bc_loss"} <= set(lines[0]) and {"critic_loss", "tau_mean", "value_entropy", "q_mean"} <= set(
        lines[-1]
    )
    assert (run / "tau_entropy.png").stat().st_size > 0  # the training plot, at the end of training
    sig = policy_io.read_signature(onnx.load(run / "policy.onnx"))
    assert sig.instructions == ("<unknown>", toytask.INSTRUCTION) and (sig.image_height, sig.image_width) == (
        8,
        8,
    )


def _event_scalars(run_dir):
    """{tag: [(step, value, wall time)]} of the TensorBoard event files in `run_dir`, read back from
    their TFRecord framing (length, masked CRC-32C of it, Event proto, masked CRC-32C of it)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    out: dict[str, list] = {}
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    assert files, f"no event file in {run_dir}"
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_crc32c(header)
            body = data[pos + 12 : pos + 12 + length]
            assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_crc32c(body)
            pos += 16 + length
            event = Event.FromString(body)
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value, event.wall_time))
    return out


def test_offline_run_writes_the_metrics_as_tensorboard_scalars(offline_run):
    """`tensorboard --logdir` of the run (or of a fleet run dir above it): each numeric value of each
    metrics.jsonl line is a scalar under the same key, at the same step and wall time."""
    run = offline_run / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    expected: dict[str, list] = {}
    for line in lines:
        for key, value in line.items():
            if key not in ("step", "phase", "time"):
                expected.setdefault(key, []).append((line["step"], np.float32(value), line["time"]))
    events = _event_scalars(run)
    assert set(events) == set(expected) and {"bc_loss", "critic_loss", "tau_mean"} <= set(events)
    for tag, points in expected.items():
        got = events[tag]
        assert [s for s, _, _ in got] == [s for s, _, _ in points], tag
        np.testing.assert_array_equal([v for _, v, _ in got], [v for _, v, _ in points], tag)  # float32
        assert [t for _, _, t in got] == pytest.approx([t for _, _, t in points]), tag


def test_online_publishes_policies_from_bridge_store_and_resumes(offline_run, tmp_path):
    rng = np.random.default_rng(3)
    bridge = tmp_path / "bridge"
    _store(
        bridge / "store",
        [toytask.make_episode(rng, EpisodeKind.ROLLOUT, toytask.GOAL, i, teleop_from=10) for i in range(3)],
    )
    s = run_online(
        bridge, tmp_path / "online", init_from=offline_run / "run", max_new_steps=10, progress=False
    )
    assert int(s.state.step) == 20 and s.phase == "rl"
    assert s.cfg.divl.tau_base == 0.9 and s.cfg.divl.nstep == 1  # the paper's online settings
    policies = PolicyStore(bridge / "policies")
    assert policies.versions() == ["v000001", "v000002"]
    info = policies.latest()
    data = policies.path_of(info.version).read_bytes()
    assert hashlib.sha256(data).hexdigest() == info.sha256 and info.training_step == 20
    assert info.extra["episodes"] == 3 and info.extra["intervention_steps"] == 60
    assert policy_io.read_signature(onnx.load_from_string(data)).version == "v000002"
    # The training plot (tau, value entropy) is rewritten at each checkpoint and at the exit.
    assert read_series(tmp_path / "online")["step"][-1] == 20
    assert (tmp_path / "online" / "tau_entropy.png").read_bytes()[:4] == b"\x89PNG"
    resumed = run_online(bridge, tmp_path / "online", max_new_steps=5, progress=False)  # no --init: resume
    assert int(resumed.state.step) == 25 and policies.versions()[-1] == "v000003"


def test_cli_online_reads_its_episode_store_and_feeds_each_policy_through_it_to_a_bridge(
    offline_run, tmp_path
):
    """--episode-store: the fleet's episodes come from there, not <bridge-root>/store; --queue: every
    published version is also put under that store's policies/ and announced, and a bridge mirrors it."""
    from lwd_common.policy_feed import PolicyFollower
    from lwd_learner.cli import main
    from lwd_testing.nats_server import nats_jetstream

    rng = np.random.default_rng(3)
    fleet_store = tmp_path / "fleet_store"
    _store(fleet_store, [toytask.make_episode(rng, EpisodeKind.ROLLOUT, toytask.GOAL, i) for i in range(3)])
    with nats_jetstream(tmp_path / "nats") as queue:
        argv = ["online", "--bridge-root", str(tmp_path / "learner_side"), "--out", str(tmp_path / "online")]
        argv += [
            "--init",
            str(offline_run / "run"),
            "--episode-store",
            str(fleet_store),
            "--queue",
            queue.url,
        ]
        assert main([*argv, "--max-new-steps", "10", "--no-progress"]) == 0
        published = PolicyStore(tmp_path / "learner_side" / "policies")
        assert published.versions() == ["v000001", "v000002"] and published.latest().extra["episodes"] == 3
        bridge_policies = PolicyStore(tmp_path / "bridge" / "policies")
        follower = PolicyFollower(str(fleet_store), queue.url, bridge_policies, "bridge0")
        try:
            mirrored = follower.step(wait_s=5) + follower.step(wait_s=1)
        finally:
            follower.close()
    assert mirrored == ["v000001", "v000002"] and bridge_policies.latest() == published.latest()


def test_online_queue_without_an_episode_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--episode-store"):
        run_online(tmp_path / "bridge", tmp_path / "online", queue="nats://127.0.0.1:4222", progress=False)


def test_online_without_init_or_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--init"):
        run_online(tmp_path / "bridge", tmp_path / "online", max_new_steps=1, progress=False)


def test_cli_offline_and_export(tmp_path):
    """A preset, a JSON config over it and typed flags over both, end to end through a real run."""
    _store(tmp_path / "store", toytask.mixed_dataset(1, n_demo=2, n_rollout=2, n_play=1))
    (tmp_path / "cfg.json").write_text(json.dumps({"model": {"encoder": {"image_size": [8, 8]}}}))
    base = [sys.executable, "-m", "lwd_learner.cli"]
    r = subprocess.run(
        base
        + [
            "offline",
            "--store",
            str(tmp_path / "store"),
            "--out",
            str(tmp_path / "run"),
            "--preset",
            "smoke",
            "--config",
            str(tmp_path / "cfg.json"),
            "--train.bc-steps",
            "3",
            "--train.rl-steps",
            "2",
            "--train.batch-size",
            "4",
            "--divl.value-kind",
            "expectile",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 5 and "tau_mean" not in last  # expectile baseline: scalar value, no tau
    r = subprocess.run(
        base
        + [
            "export",
            "--run",
            str(tmp_path / "run"),
            "--onnx",
            str(tmp_path / "p.onnx"),
            "--version",
            "v000009",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sig = policy_io.read_signature(onnx.load(tmp_path / "p.onnx"))
    assert sig.version == "v000009" and (sig.image_height, sig.image_width) == (8, 8)


def test_cli_online_defaults_are_the_init_checkpoints_config(offline_run, tmp_path):
    """Online continues a checkpoint: its config (with the paper's online changes) is the default, a
    named preset replaces the recipe but not the model, and changing the model is refused."""
    from lwd_learner.cli import main, parse
    from lwd_learner.config import PRESETS, online_config

    saved = tiny_config()  # what offline_run trained with
    common = [
        "online",
        "--bridge-root",
        str(tmp_path / "bridge"),
        "--out",
        str(tmp_path / "on"),
        "--init",
        str(offline_run / "run"),
    ]
    assert parse(common).args.cfg == online_config(saved)
    cfg = parse([*common, "--preset", "fleet", "--train.publish-every", "7"]).args.cfg
    assert cfg.model == saved.model and cfg.train.encoder_steps == PRESETS["fleet"][1].train.encoder_steps
    assert cfg.train.publish_every == 7 and cfg.divl.tau_base == 0.9
    assert main([*common, "--model.encoder.image-size", "16", "16"]) == 2
    assert not (tmp_path / "on").exists()


def test_cli_reports_missing_store_snapshot(tmp_path):
    EpisodeStore(tmp_path / "empty")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "lwd_learner.cli",
            "offline",
            "--store",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no episodes in a snapshot" in r.stderr


def test_ctrl_c_while_the_learner_waits_for_its_first_episode_stops_it_quietly(offline_run, tmp_path):
    """SIGINT before the training loop (here: waiting for the first episode) exits 0 with one line."""
    cmd = [
        sys.executable,
        "-m",
        "lwd_learner.cli",
        "online",
        "--bridge-root",
        str(tmp_path / "bridge"),
        "--out",
        str(tmp_path / "online"),
        "--init",
        str(offline_run / "run"),
        "--offline-store",
        str(tmp_path / "no_offline_data"),  # nothing to train on, so it waits for the bridge's first episode
    ]
    proc = subprocess.Popen(die_with_parent(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.kill)  # a bound for a loaded machine, not a timing assertion
    watchdog.start()
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "waiting for the first episode" in line:
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted while starting up" in err
