"""The operators' dashboard: watch and steer a learning fleet live in a browser (docs/dashboard.md).

    python -m lwd_actor.dashboard --run-dir RUN [--bind 127.0.0.1:8765]

Reads what the bridge and the learner leave in the run directory (episode store, status.json,
policy store, metrics.jsonl) and changes only the policy pin, through the same `PolicyStore` calls as
`python -m lwd_learner_bridge.policy_admin`. `create_app` (in `app`) builds the HTTP app; `state`
holds what it shows, ROS-free and web-free.
"""

DEFAULT_BIND = "127.0.0.1:8765"  # loopback: beyond it only with the token and TLS (security.py)
