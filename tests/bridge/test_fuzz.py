"""Fuzzing the bridge: a few thousand hostile frames while a real robot client streams (bounded, seeded).

Stated bounds (loopback, bridge limits `fuzzing.FUZZ_LIMITS`: 1 MiB frames, 32 MiB of
partial episodes, 32 MiB held by the transport; this 2-core machine is shared):
- every `status_query` of a monitor session, sent every 0.2 s throughout, is answered
  within PROBE_BOUND_S;
- the bridge's peak RSS stays within RSS_BOUND_MB of its RSS after start;
- its log stays under LOG_BOUND_BYTES;
- the store ends up holding each good episode exactly once, byte-identical, and nothing else.
`benchmarks/bridge_fuzz.py` runs the same for longer and prints the figures.
"""

from fuzzing import FUZZ_LIMITS, run_fuzz, start_server

PROBE_BOUND_S = 2.0
RSS_BOUND_MB = 250
LOG_BOUND_BYTES = 256_000
FRAMES = 3000


def test_bridge_survives_fuzzing_while_a_good_robot_streams(tmp_path, endpoint):
    root, log_path = tmp_path / "bridge", tmp_path / "bridge.log"
    proc = start_server(root, endpoint, log_path, 2000, *FUZZ_LIMITS)
    try:
        result = run_fuzz(
            root,
            endpoint,
            proc.pid,
            log_path,
            frames=FRAMES,
            seed=1234,
            episodes=6,
            steps=40,
            duration_s=20,
            zmtp_bytes=64 << 20,
            time_limit_s=120,
        )
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)
    summary = result.summary()
    print(summary)  # the figures (pytest -s)
    assert alive, log_path.read_text()[-3000:]
    assert summary["frames"] >= FRAMES
    assert result.good_idle and result.stored == result.expected and len(result.expected) == 6, summary
    assert result.probe_failures == 0 and len(result.probe_latencies) >= 20, summary
    assert max(result.probe_latencies) < PROBE_BOUND_S, summary
    assert result.rss_peak - result.rss_baseline < RSS_BOUND_MB << 20, summary
    assert result.log_bytes < LOG_BOUND_BYTES, summary
    assert summary["health"] == "ok", summary
