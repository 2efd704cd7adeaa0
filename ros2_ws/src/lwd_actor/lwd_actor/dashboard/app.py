"""The dashboard's HTTP app (Starlette): the page, its JSON API, the live event stream, pin actions.

    GET  /                                      the page (static/index.html, app.js, style.css)
    GET  /static/plotly.min.js                  plotly's bundle, from the installed plotly package
    GET  /api/state                             every section of the state as one JSON object
    GET  /api/events                            Server-Sent Events: `state` events carrying the
                                                sections that changed (all of them first)
    GET  /api/episodes/{id}                     one episode for the replay (joints, sources, takeovers)
    GET  /api/episodes/{id}/frames/{cam}/{i}    the JPEG of camera `cam` at step i
    GET  /api/episodes/{id}/values              the critic's value along it: {"state": ...} (202 while
                                                the learner's value-plot runs), then
    GET  /api/episodes/{id}/values.png          its plot
    POST /api/policy/pin    {"version", "why"}  the same PolicyStore calls as policy_admin, so every
    POST /api/policy/revert {"why"}             change lands in the same pin_log.jsonl, by
    POST /api/policy/unpin  {"why"}             "dashboard:<client address>"

Access rules: `security.Guard`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lwd_actor.dashboard.security import Guard
from lwd_actor.dashboard.state import DashboardState
from lwd_actor.dashboard.values import ValueJobs
from lwd_common.policy_store import PolicyStore, served_version
from lwd_common.text import printable

STATIC = Path(__file__).resolve().parent / "static"
MAX_WHY = 500
KEEPALIVE_S = 15.0


def plotly_js() -> Path:
    """plotly.min.js as the installed plotly package ships it (package_data/), never a CDN."""
    spec = importlib.util.find_spec("plotly")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the plotly package is not installed (pip install plotly)")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def create_app(
    run_dir: str | Path,
    *,
    token: str,
    bridge_root: str | Path | None = None,
    store: str | Path | None = None,
    learner_dir: str | Path | None = None,
    bind_host: str = "127.0.0.1",
    reads_need_token: bool | None = None,
    refresh_s: float = 1.0,
) -> Starlette:
    """The dashboard over `run_dir` (its bridge root, episode store and learner run by default as
    docs/fleet.md lays them out). `bind_host` decides the access rules (`security.Guard`)."""
    state = DashboardState(run_dir, bridge_root, store, learner_dir, refresh_s=refresh_s)
    values = ValueJobs(state.learner_dir, state.store_location, state.run_dir / "dashboard" / "values")
    plotly_path = plotly_js()
    closing = threading.Event()  # set by the server on shutdown: event streams end, connections close

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_path, headers={"Cache-Control": "public, max-age=86400"})

    async def api_state(request: Request) -> Response:
        sections = await run_in_threadpool(state.sections)
        return _json_text(_join(sections))

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            sent: dict[str, str] = {}
            last = time.monotonic()
            yield "retry: 2000\n\n"
            while not closing.is_set():
                sections = await run_in_threadpool(state.sections)
                changed = {k: s for k, s in sections.items() if sent.get(k) != s.digest}
                if changed:
                    sent.update({k: s.digest for k, s in changed.items()})
                    yield f"event: state\ndata: {_join(changed)}\n\n"
                    last = time.monotonic()
                elif time.monotonic() - last > KEEPALIVE_S:
                    yield ": keepalive\n\n"
                    last = time.monotonic()
                await asyncio.sleep(refresh_s)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def episode(request: Request) -> Response:
        eid = request.path_params["episode_id"]
        try:
            detail = await run_in_threadpool(state.episode_detail, eid)
        except (KeyError, ValueError, FileNotFoundError):
            return _error(404, "no such episode in the store's snapshots")
        return JSONResponse(detail, headers={"Cache-Control": "no-store"})

    async def frame(request: Request) -> Response:
        p = request.path_params
        try:
            jpeg = await run_in_threadpool(state.frame, p["episode_id"], p["camera"], p["step"])
        except (KeyError, ValueError, IndexError, FileNotFoundError):
            return _error(404, "no such frame")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def episode_values(request: Request) -> Response:
        eid = request.path_params["episode_id"]
        try:
            await run_in_threadpool(state.episode, eid)  # committed and readable
        except (KeyError, ValueError, FileNotFoundError):
            return _error(404, "no such episode in the store's snapshots")
        result = values.get(eid)  # in the event loop's thread (it may start the subprocess)
        code = 202 if result["state"] in ("computing", "queued") else 200
        return JSONResponse(result, status_code=code, headers={"Cache-Control": "no-store"})

    async def episode_values_png(request: Request) -> Response:
        try:
            path = values.plot_path(request.path_params["episode_id"])
        except ValueError:
            path = None
        if path is None:
            return _error(404, "no value plot for this episode (yet)")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def policy_action(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("pin", "revert", "unpin"):
            return _error(404, f"unknown action {action!r}")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        why = body.get("why")
        if not isinstance(why, str) or not why.strip():
            return _error(400, "a reason ('why') is required")
        if len(why) > MAX_WHY:
            return _error(400, f"the reason is longer than {MAX_WHY} characters")
        version = body.get("version")
        if action == "pin" and not isinstance(version, str):
            return _error(400, "pin needs a 'version'")
        if not (state.bridge_root / "policies").is_dir():
            return _error(409, f"no policy store in {state.bridge_root}")
        client = request.client.host if request.client else "unknown"
        by = f"dashboard:{client}"

        def change() -> str:
            store = PolicyStore(state.bridge_root / "policies")
            if action == "pin":
                pin = store.pin(str(version), by, why.strip())
            elif action == "revert":
                pin = store.revert(by, why.strip())
            else:
                pin = store.unpin(by, why.strip())
            latest = store.latest()
            target = pin.pinned or (latest.version if latest else None)
            if not target:
                return f"{action}: no published policy"
            if pin.pinned:
                return f"{action}: fleet now served {target} (pinned, as {served_version(target, pin.epoch)})"
            return f"{action}: fleet now served {target} (newest)"

        try:
            message = await run_in_threadpool(change)
        except (KeyError, ValueError) as exc:
            return _error(409, f"{action} failed: {exc.args[0] if exc.args else exc}")
        state.invalidate()
        return JSONResponse({"ok": True, "message": printable(message, keep="")})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            values.close()

    routes = [
        Route("/", index),
        Route("/index.html", index),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/state", api_state),
        Route("/api/events", events),
        Route("/api/episodes/{episode_id}", episode),
        Route("/api/episodes/{episode_id}/frames/{camera}/{step:int}", frame),
        Route("/api/episodes/{episode_id}/values", episode_values),
        Route("/api/episodes/{episode_id}/values.png", episode_values_png),
        Route("/api/policy/{action}", policy_action, methods=["POST"]),
    ]
    guard = Middleware(Guard, token=token, bind_host=bind_host, reads_need_token=reads_need_token)
    app = Starlette(routes=routes, middleware=[guard], lifespan=lifespan)
    app.state.dashboard = state
    app.state.values = values
    app.state.closing = closing
    return app


def _join(sections: dict[str, Any]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{s.text}" for k, s in sections.items()) + "}"


def _json_text(text: str) -> Response:
    return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
