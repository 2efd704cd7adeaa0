"""The dashboard as an operator uses it: a real `python -m lwd_actor.dashboard` process over a run
directory served by a real bridge process, robots' `BridgeClient`s streaming to that bridge, and the
page in the system chromium (Playwright).

`LWD_DASHBOARD_SCREENSHOT=docs/dashboard.png ./lwd test tests/dashboard -k operator` also writes the
screenshot the docs show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
from dashutil import build_run, make_steps, start_bridge, start_dashboard

from lwd_common.episode import EpisodeKind, EpisodeMeta, EpisodeOutcome, Label
from lwd_common.policy_store import PolicyStore, published_version
from lwd_common.transport import BridgeClient, ClientConfig

REPO = Path(__file__).resolve().parents[2]
XSS = '<img src=x onerror="window.__pwned=1">'


def until(page, js: str, arg=None, timeout: float = 15_000) -> None:
    """Wait until the JS expression or function `js` is true in the page. (Playwright's own
    wait_for_function evaluates strings with eval, which the dashboard's CSP forbids.)"""
    deadline = time.monotonic() + timeout / 1000
    expr = js if js.lstrip().startswith(("(", "v =>", "() =>")) else f"() => ({js})"
    while not page.evaluate(expr, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {js}"
        time.sleep(0.1)


def free_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def robot_client(endpoint: str, robot: str, spool: Path) -> BridgeClient:
    return BridgeClient(
        ClientConfig(
            endpoint=endpoint, robot_id=robot, spool_dir=str(spool), steps_per_chunk=15, ack_timeout_s=0.5
        )
    )


def begin(client: BridgeClient, eid: str, task: str = "can_to_bin") -> EpisodeMeta:
    meta = EpisodeMeta(
        eid, client.config.robot_id, task, "put the red can in the left bin", EpisodeKind.ROLLOUT
    )
    client.begin(meta)
    return meta


def stream_episode(client: BridgeClient, eid: str, version: str, n: int = 60) -> None:
    """One whole episode with camera frames and an operator takeover in its middle."""
    begin(client, eid)
    for s in make_steps(n, version, teleop=(20, 32), seed=7):
        client.add_step(s)
    client.end(EpisodeOutcome(Label.SUCCESS, n))


def test_operator_watches_replays_and_pins_live(tmp_path, procs, browser):
    run = tmp_path / "run"
    made = build_run(run, versions=5, per_version=8)
    versions = made["versions"]
    newest = versions[-1]
    endpoint = free_endpoint()
    start_bridge(procs, run / "bridge", endpoint)
    _, url, token = start_dashboard(procs, run)
    clients = [robot_client(endpoint, r, tmp_path / f"spool-{r}") for r in made["robots"]]
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        for c in clients:  # the robots load the newest policy and say so (status.json: policy_version)
            got = c.fetch_policy_if_newer("")
            assert got is not None and got.version == newest, c.error
            c.report_policy_loaded(got.version)

        page.goto(url)
        assert "token" not in page.url  # taken out of the address bar into the tab's session storage
        until(
            page,
            """v => { const rows = [...document.querySelectorAll('#robots tbody tr')];
                      return rows.length === 3 && rows.every(r => r.cells[3].textContent.startsWith(v)); }""",
            arg=newest,
            timeout=30_000,
        )
        assert page.locator("#episode-table tbody tr").count() == 40
        page.evaluate("window.__sameDocument = true")

        # Live, without a reload: robot0 streams an episode through the bridge; robot2 starts one.
        eid = "robot0-live0001"
        stream_episode(clients[0], eid, newest)
        begin(clients[2], "robot2-open0001")
        steps = make_steps(40, newest, teleop=(20, 39), seed=3)  # the policy drives, then the operator
        for s in steps[:20]:
            clients[2].add_step(s)
        page.wait_for_selector(f'#episode-table tr[data-episode="{eid}"]', timeout=30_000)
        robot2_mode = """v => [...document.querySelectorAll('#robots tbody tr')]
                             .some(r => r.dataset.robot === 'robot2' && r.cells[1].textContent === v)"""
        until(page, robot2_mode, arg="autonomous", timeout=30_000)
        for s in steps[20:]:
            clients[2].add_step(s)
        until(page, robot2_mode, arg="operator", timeout=30_000)
        assert page.evaluate("window.__sameDocument") is True

        # Replay: the three cameras play, the joints plot marks the takeover.
        page.click(f'#episode-table tr[data-episode="{eid}"]')
        until(
            page, "document.getElementById('cam-2') && document.getElementById('cam-2').dataset.step === '0'"
        )
        first = {i: page.get_attribute(f"#cam-{i}", "src") for i in range(3)}
        page.click("#play-btn")
        until(page, "Number(document.getElementById('cam-0').dataset.step) >= 25", timeout=20_000)
        assert all(page.get_attribute(f"#cam-{i}", "src") != first[i] for i in range(3))
        assert (
            page.evaluate("document.getElementById('plot-joints').layout.shapes.length") == 2
        )  # takeover + cursor
        until(page, "document.getElementById('values-status').textContent.includes('no learner checkpoint')")
        until(
            page, "document.getElementById('play-btn').textContent === 'Play'", timeout=20_000
        )  # played to the end
        until(page, "document.getElementById('cam-0').dataset.step === '59'")  # the last frame shows

        # Pin an older version from the page: the policy store, its log and the robots follow.
        page.select_option("#pin-version", versions[1])
        page.click("#pin-btn")
        assert "reason is required" in page.text_content("#policy-result")
        page.fill("#pin-why", f"{newest} drops the can at the bin")
        page.click("#pin-btn")
        until(page, "document.getElementById('policy-result').textContent.includes('pinned')")
        store = PolicyStore(run / "bridge" / "policies")
        info, pin = store.serving()
        assert info.version == versions[1] and pin.by == "dashboard:127.0.0.1"
        assert store.pin_log()[-1]["why"] == f"{newest} drops the can at the bin"
        got = clients[1].fetch_policy_if_newer(newest)  # a robot on the newest gets the pinned one
        assert got is not None and published_version(got.version) == versions[1], clients[1].error
        assert got.info.sha256 == store.get(versions[1]).sha256
        clients[1].report_policy_loaded(got.version)
        until(
            page,
            """v => [...document.querySelectorAll('#robots tbody tr')]
                     .some(r => r.dataset.robot === 'robot1' && r.cells[3].textContent === v)""",
            arg=versions[1],
            timeout=30_000,
        )
        until(page, "document.querySelector('#pin-log tbody tr') !== null")

        page.click(
            f'#episode-table tr[data-episode="{made["episodes"][-3]}"]'
        )  # a recent one, for the picture
        until(page, "document.getElementById('cam-0').dataset.step === '0'")
        page.evaluate(
            "document.getElementById('scrub').value = 22; document.getElementById('scrub').dispatchEvent(new Event('input'))"
        )
        until(page, "document.getElementById('cam-0').dataset.step === '22'")
        page.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("LWD_DASHBOARD_SCREENSHOT"):
            shutil.copyfile(shot, REPO / os.environ["LWD_DASHBOARD_SCREENSHOT"])
        assert not errors, errors
    finally:
        page.close()
        for c in clients:
            c.close()


def test_peer_text_shows_as_text_in_the_page(tmp_path, procs, browser):
    run = tmp_path / "run"
    build_run(run, versions=1, per_version=2, extra_robot=XSS, n_steps=10)
    _, url, _ = start_dashboard(procs, run)
    page = browser.new_page()
    try:
        page.goto(url)
        until(page, "document.querySelectorAll('#robots tbody tr').length === 3")
        cells = page.eval_on_selector_all(
            "#robots tbody tr td:first-child", "tds => tds.map(td => td.textContent)"
        )
        assert XSS in cells
        page.click('#episode-table tr[data-episode="odd-ep0002"]')
        until(page, "document.getElementById('replay-meta').textContent.includes('onerror')")
        time.sleep(0.5)
        assert page.evaluate("window.__pwned") is None
        made = page.locator("main img:not([id^=cam-]):not(#values-img)").count()
        assert made == 0  # no element was made from the text
    finally:
        page.close()


def test_the_running_dashboard_refuses_requests_without_the_token(tmp_path, procs):
    run = tmp_path / "run"
    made = build_run(run, versions=2, per_version=1, n_steps=5)
    _, url, token = start_dashboard(procs, run)
    base = url.split("#")[0].rstrip("/")
    pin = {"version": made["versions"][0], "why": "test"}
    with httpx2.Client(base_url=base, timeout=10) as http:
        assert http.post("/api/policy/pin", json=pin).status_code == 401
        assert http.post("/api/policy/pin", json=pin, headers={"X-LWD-Token": token[:-1]}).status_code == 401
        assert http.get("/api/state", headers={"Host": "attacker.example"}).status_code == 403
        assert PolicyStore(run / "bridge" / "policies").pin_log() == []
        ok = http.post("/api/policy/pin", json=pin, headers={"X-LWD-Token": token})
        assert (
            ok.status_code == 200
            and PolicyStore(run / "bridge" / "policies").pin_state().pinned == made["versions"][0]
        )
        with http.stream("GET", "/api/events") as events:  # the live stream: every section first
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert all(f'"{k}":' in first for k in ("fleet", "policy", "learning", "episodes"))


def test_tls_serves_https_with_the_given_certificate(tmp_path, procs):
    run = tmp_path / "run"
    run.mkdir()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    _, url, token = start_dashboard(procs, run, "--tls-cert", str(cert), "--tls-key", str(key))
    assert url.startswith("https://127.0.0.1:")
    import ssl

    ctx = ssl.create_default_context(cafile=str(cert))
    with httpx2.Client(verify=ctx, timeout=10) as http:
        assert http.get(url.split("#")[0] + "api/state").status_code == 200


@pytest.mark.slow
def test_critic_value_along_an_episode_is_plotted_on_request(tmp_path, procs, browser):
    """A real (tiny) learner checkpoint: the page asks, the learner's value-plot runs in a
    subprocess, the page shows its plot; the plot is cached per checkpoint."""
    run = tmp_path / "run"
    made = build_run(run, versions=1, per_version=4, n_steps=20)
    learner = tmp_path / "learner"
    train = procs.python(
        "learner",
        "-m",
        "lwd_learner.cli",
        "offline",
        "--preset",
        "smoke",
        "--store",
        str(run / "bridge" / "store"),
        "--out",
        str(learner),
        "--no-progress",
    )
    assert procs.wait(train, timeout=600) == 0, procs.log("learner")
    _, url, _ = start_dashboard(procs, run, "--learner-dir", str(learner))
    eid = made["episodes"][0]
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_selector(f'#episode-table tr[data-episode="{eid}"]', timeout=30_000)
        page.click(f'#episode-table tr[data-episode="{eid}"]')
        until(page, "document.getElementById('values-status').textContent.includes('computing')")
        until(page, "!document.getElementById('values-img').hidden", timeout=300_000)
        until(page, "document.getElementById('values-img').naturalWidth > 300")
        assert "checkpoint step 30" in page.text_content("#values-status")
    finally:
        page.close()
    assert [p.name for p in (run / "dashboard" / "values").glob("*.png")] == [f"{eid}.step30.png"]
