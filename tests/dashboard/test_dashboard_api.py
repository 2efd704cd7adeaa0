"""The dashboard's HTTP API over a real run directory (episode store, policy store, metrics, status),
through Starlette's TestClient: what the state says, who may pin, what is refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from dashutil import build_run, write_status
from starlette.testclient import TestClient

from lwd_actor.dashboard.__main__ import main as dashboard_main
from lwd_actor.dashboard.app import STATIC, create_app
from lwd_actor.dashboard.security import load_or_create_token
from lwd_actor.dashboard.state import MetricsTail, wilson
from lwd_common.policy_store import PolicyStore

TOKEN = "t0ken-for-tests"
LOOPBACK = "http://127.0.0.1:8765"
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("run")
    made = build_run(run, versions=3, per_version=6, extra_robot=XSS)
    write_status(
        run / "bridge",
        {"robot0": {"open_episodes": 1}, "robot1": {}, XSS: {"policy_ok": False}},
        made["versions"][-1],
    )
    return run, made


def client(run: Path, bind_host: str = "127.0.0.1", base_url: str = LOOPBACK) -> TestClient:
    return TestClient(create_app(run, token=TOKEN, bind_host=bind_host, refresh_s=0.0), base_url=base_url)


def post(c: TestClient, action: str, body: dict, token: str | None = TOKEN, **headers: str):
    if token is not None:
        headers["X-LWD-Token"] = token
    return c.post(
        f"/api/policy/{action}",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    )


def test_state_has_robots_versions_learner_and_episodes(run):
    path, made = run
    with client(path) as c:
        r = c.get("/api/state")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    s = r.json()
    robots = {x["id"]: x for x in s["fleet"]["robots"]}
    assert set(robots) == {"robot0", "robot1", "robot2", XSS}
    assert robots["robot0"]["mode"] == "running" and robots["robot1"]["mode"] == "idle"
    assert robots["robot2"]["mode"] == "offline"  # in the store, not in the bridge's status
    assert robots[XSS]["mode"] == "fault"  # its policy failed to load
    assert robots["robot0"]["policy_version"] == made["versions"][-1] and robots["robot0"]["on_target"]
    assert robots["robot0"]["episodes"] == 6 and robots["robot0"]["task"]
    learning = s["learning"]
    assert [v["label"] for v in learning["versions"]] == ["v1", "v2", "v3"]
    v1 = learning["versions"][0]
    assert v1["n"] == 6 and v1["success_ci"][0] <= v1["success"] <= v1["success_ci"][1]
    assert learning["learner"]["step"] == 4000 and "critic_loss" in learning["learner"]["series"]
    assert len(learning["learner"]["series"]["step"]) == 80
    assert s["policy"]["newest"] == made["versions"][-1] and len(s["policy"]["versions"]) == 3
    assert s["episodes"]["total"] == len(made["episodes"])
    assert s["episodes"]["recent"][0]["id"] == made["episodes"][-1]  # newest first


def test_pin_needs_the_token_and_lands_in_the_pin_log(run):
    path, made = run
    store = PolicyStore(path / "bridge" / "policies")
    before = len(store.pin_log())
    with client(path) as c:
        body = {"version": made["versions"][0], "why": "v3 drops cans"}
        assert post(c, "pin", body, token=None).status_code == 401
        assert post(c, "pin", body, token="wrong").status_code == 401
        assert post(c, "pin", body, Origin="http://evil.example").status_code == 403
        refused = c.post(
            "/api/policy/pin", data={"version": "v000001", "why": "x"}, headers={"X-LWD-Token": TOKEN}
        )
        assert refused.status_code == 415  # a form post (what a cross-site page can send) is refused
        assert post(c, "pin", {"version": made["versions"][0]}).status_code == 400  # no reason
        assert post(c, "pin", {"version": "v000099", "why": "x"}).status_code == 409
        assert len(store.pin_log()) == before  # nothing refused was logged
        ok = post(c, "pin", body, Origin=LOOPBACK)
        assert ok.status_code == 200, ok.text
        assert store.serving()[0].version == made["versions"][0]
        entry = store.pin_log()[-1]
        assert (entry["action"], entry["by"], entry["why"]) == (
            "pin",
            "dashboard:testclient",
            "v3 drops cans",
        )
        assert c.get("/api/state").json()["policy"]["pinned"] == made["versions"][0]
        assert post(c, "unpin", {"why": "fixed"}).status_code == 200
        assert store.serving()[0].version == made["versions"][-1]
        assert post(c, "revert", {"why": "back one"}).status_code == 200
        assert store.serving()[0].version == made["versions"][-2]
        log = c.get("/api/state").json()["policy"]["log"]
        assert [e["action"] for e in log[:3]] == ["revert", "unpin", "pin"]  # newest first
        assert post(c, "unpin", {"why": "done"}).status_code == 200


def test_reads_need_the_token_off_loopback_but_the_page_does_not(run):
    path, _ = run
    with client(path, bind_host="0.0.0.0", base_url="http://fleet-host:8765") as c:
        assert c.get("/").status_code == 200
        assert c.get("/static/app.js").status_code == 200
        assert c.get("/static/plotly.min.js").status_code == 200
        assert c.get("/api/state").status_code == 401
        assert c.get("/api/state?token=" + TOKEN).status_code == 401  # query tokens: the event stream only
        assert c.get("/api/state", headers={"X-LWD-Token": TOKEN}).status_code == 200
    with client(path) as c:  # loopback: reads are open, state changes are not
        assert c.get("/api/state").status_code == 200


def test_a_foreign_host_name_is_refused_on_loopback(run):
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 must not read the fleet."""
    path, _ = run
    with client(path, base_url="http://evil.example:8765") as c:
        assert c.get("/api/state").status_code == 403
        assert c.get("/").status_code == 403


def test_peer_strings_are_data_never_markup(run):
    path, _ = run
    with client(path) as c:
        r = c.get("/api/state")
        page = c.get("/")
    assert XSS in {x["id"] for x in r.json()["fleet"]["robots"]}  # as data, in a JSON document
    for response in (r, page):
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    js = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink
    assert "<script>" not in (STATIC / "index.html").read_text().replace('<script src="static/', "")


def test_episode_replay_frames_and_values(run):
    path, made = run
    eid = made["episodes"][1]
    with client(path) as c:
        d = c.get(f"/api/episodes/{eid}").json()
        assert d["steps"] == 45 and len(d["joint_pos"]) == 45 and len(d["action"][0]) == len(d["joint_names"])
        assert d["cameras"] and d["time"][0] == 0.0
        teleop = [i for i, s in enumerate(d["source"]) if s == 1]
        assert d["teleop_segments"] == ([[teleop[0], teleop[-1]]] if teleop else [])
        jpeg = c.get(f"/api/episodes/{eid}/frames/{d['cameras'][0]}/10")
        assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
        assert c.get(f"/api/episodes/{eid}/frames/{d['cameras'][0]}/45").status_code == 404
        assert c.get(f"/api/episodes/{eid}/frames/nocam/1").status_code == 404
        assert c.get("/api/episodes/robot0-nope").status_code == 404
        assert c.get("/api/episodes/..%2Fetc").status_code == 404
        v = c.get(f"/api/episodes/{eid}/values").json()
        assert v["state"] == "unavailable" and "no learner checkpoint" in v["reason"]


def test_non_loopback_bind_without_tls_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        dashboard_main(["--run-dir", str(tmp_path), "--bind", "0.0.0.0:0"])
    assert exc.value.code == 2 and "without TLS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dashboard_main(["--run-dir", str(tmp_path), "--bind", "0.0.0.0:0", "--tls-cert", "c.pem"])  # no key
    assert not (tmp_path / "keys").exists()  # refused before anything was made


def test_the_token_is_made_once_per_run_and_private(tmp_path):
    path = tmp_path / "keys" / "dashboard.token"
    token = load_or_create_token(path)
    assert len(token) >= 40 and load_or_create_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        load_or_create_token(path)


def test_metrics_are_tailed_incrementally(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert not tail.poll() and tail.summary()["step"] is None
    path.write_text('{"step": 50, "phase": "bc", "bc_loss": 1.0}\n{"step": 100, "bc_l')
    assert tail.poll() and tail.summary()["step"] == 50  # the half-written line waits
    with path.open("a") as f:
        f.write('oss": 0.5}\nnot json\n{"step": 50, "phase": "bc", "bc_loss": 0.9, "extra": "x"}\n')
    tail.poll()
    s = tail.summary()
    assert s["series"] == {"step": [50, 100], "bc_loss": [0.9, 0.5]}  # step 50 logged again: the later line
    assert s["latest"] == {"bc_loss": 0.5}


def test_wilson_interval():
    lo, hi = wilson(5, 10)
    assert abs(lo - 0.2366) < 1e-3 and abs(hi - 0.7634) < 1e-3
    assert wilson(0, 10)[0] == 0.0 and abs(wilson(0, 10)[1] - 0.2775) < 1e-3
    assert wilson(0, 0) is None
