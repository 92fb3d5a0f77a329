"""The analyst console's web app: ``create_app(store, ...)`` → a FastAPI app (no globals: every object it serves
is passed in, so tests and benchmarks build their own).

Routes: ``/`` the page (static assets shipped in the package, no CDN), ``/api/status``, ``/api/rates``,
``/api/alerts`` (filtered and paged on the server), ``/api/alerts/{id}``, ``/api/stream`` (server-sent events:
batches of alert rows and a rates sample each second), ``/api/search``, ``/api/flows/{id}``,
``/api/kg/{mission}.svg``, ``/api/model`` and ``/report/...`` (the ``reproduce`` report given at start).

Safety: with a token every request needs it (``Authorization: Bearer``, or the HttpOnly cookie set by opening
``/?token=...`` once), compared in constant time; without a token only the loopback host names are accepted
(DNS rebinding); every response carries a Content-Security-Policy; no route reads a path from the request
(static files and report files are looked up by name in lists made at start).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import Request

from packetclip.console.live import MISSIONS, AlertStore, Rates, Timelines
from packetclip.console.services import ReportFiles, WorkspaceService, attack_url, kg_svg

COOKIE = "packetclip_token"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: The reproduce report is a plain HTML page of its own (inline styles allowed, no scripts at all).
REPORT_CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def static_assets() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package: name → (bytes, content type)."""
    out = {}
    for entry in resources.files("packetclip.console").joinpath("static").iterdir():
        suffix = Path(entry.name).suffix
        if suffix in STATIC_TYPES:
            out[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return out


class Guard:
    """ASGI middleware: token (constant-time), host check, security headers on every response."""

    def __init__(self, app, *, token: str | None, allowed_hosts: tuple[str, ...] | None):
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    def _authorised(self, scope) -> tuple[bool, bool]:
        """(authorised, came with a valid ``?token=`` to be turned into a cookie)."""
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        given = []
        auth = headers.get("authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given.append(auth[7:].strip())
        for part in headers.get("cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode():
                given.append(value)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = [q.encode("latin-1") for q in query.get("token", [])[:1]]
        ok = any(hmac.compare_digest(g, self.token) for g in given)
        ok_query = any(hmac.compare_digest(g, self.token) for g in from_query)
        return ok or ok_query, ok_query and not ok

    def _host_ok(self, scope) -> bool:
        if self.allowed_hosts is None:
            return True
        headers = dict(scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        is_report = scope.get("path", "").startswith("/report")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                hs = list(message.get("headers", []))
                hs += [(b"content-security-policy", (REPORT_CSP if is_report else CSP).encode()),
                       (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                       (b"x-frame-options", b"SAMEORIGIN" if is_report else b"DENY"),
                       (b"cache-control", b"no-store")]
                message = {**message, "headers": hs}
            await send(message)

        if not self._host_ok(scope):
            return await _plain_error(send_with_headers, 421, "this console answers only on the loopback address "
                                                              "it was started on")
        if self.token is not None:
            ok, set_cookie = self._authorised(scope)
            if not ok:
                return await _plain_error(send_with_headers, 401, "missing or wrong token: send "
                                                                  "'Authorization: Bearer TOKEN' or open /?token=TOKEN")
            if set_cookie:
                cookie = f"{COOKIE}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/"
                await send_with_headers({"type": "http.response.start", "status": 303,
                                         "headers": [(b"location", scope.get("path", "/").encode() or b"/"),
                                                     (b"set-cookie", cookie.encode()),
                                                     (b"content-length", b"0")]})
                return await send_with_headers({"type": "http.response.body", "body": b""})
        return await self.app(scope, receive, send_with_headers)


async def _plain_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


def create_app(store: AlertStore, *, rates: Rates | None = None, timelines: Timelines | None = None,
               detection=None, workspace: WorkspaceService | None = None, model_card: dict | None = None,
               report: ReportFiles | None = None, token: str | None = None,
               allowed_hosts: tuple[str, ...] | None = None, sse_batch: int = 1000, rates_every_s: float = 1.0):
    """The console app over the given objects (see the module doc). ``sse_batch``: most alert rows per stream
    message (1: one message per alert). ``allowed_hosts``: Host header names accepted (None: any)."""
    from fastapi import FastAPI, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from sse_starlette.sse import EventSourceResponse

    rates = rates or Rates()
    timelines = timelines or Timelines()
    assets = static_assets()
    app = FastAPI(title="packetclip console", docs_url=None, redoc_url=None, openapi_url=None)
    nearest_cache: dict[str, list] = {}

    class ApiError(Exception):
        def __init__(self, status: int, message: str):
            self.status, self.message = status, message

    @app.exception_handler(ApiError)
    async def _api_error(request, err: ApiError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_params(request, err: RequestValidationError):
        msgs = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            msgs.append(f"{where}: {e.get('msg')}")
        return JSONResponse({"error": "; ".join(msgs)}, status_code=422)

    @app.exception_handler(404)
    async def _not_found(request, err):
        return JSONResponse({"error": f"no such page: {request.url.path}"}, status_code=404)

    def asset(name: str):
        body, kind = assets[name]
        return Response(body, media_type=kind)

    @app.get("/", include_in_schema=False)
    def index():
        return asset("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in assets:
            raise ApiError(404, f"no such asset: {name}")
        return asset(name)

    @app.get("/api/status")
    def status():
        return {"counts": store.counts(), "totals": rates.totals(), "missions": list(MISSIONS),
                "classes": store.classes(), "detection": detection.status() if detection is not None else None,
                "search": workspace is not None, "workspace": workspace.name if workspace is not None else None,
                "report": report is not None, "model": (model_card or {}).get("name")}

    @app.get("/api/rates")
    def rate_series(last: int = Query(300, ge=1, le=3600)):
        return {"samples": rates.series(last)}

    @app.get("/api/alerts")
    def alerts(mission: str | None = Query(None, max_length=40), fine_class: str | None = Query(None, alias="class",
               max_length=60), host: str | None = Query(None, max_length=45), offset: int = Query(0, ge=0, le=10**7),
               limit: int = Query(50, ge=1, le=500)):
        if mission and mission not in MISSIONS:
            raise ApiError(422, f"mission: must be one of {', '.join(MISSIONS)}, not {mission!r}")
        if host and not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise ApiError(422, f"host: an IP address or its start (digits, '.', ':'), not {host!r}")
        return store.page(mission=mission, fine_class=fine_class, host=host, offset=offset, limit=limit)

    def nearest(fine: str, definition: str | None) -> list[dict]:
        if workspace is None or not fine:
            return []
        if fine not in nearest_cache:
            query = f"A network traffic of {fine}." + (f" {definition}" if definition else "")
            try:
                hits = workspace.search(query, top=100)
            except Exception as err:  # search is an extra: the alert detail is still served
                return [{"error": str(err)}]
            described = [h for h in hits if h.get("description")][:5]    # the nearest flows that have a text
            nearest_cache[fine] = [{"flow_id": h.get("flow_id"), "similarity": h.get("similarity"),
                                    "label": h.get("label"), "description": h.get("description")}
                                   for h in described]
            if len(nearest_cache) > 64:
                nearest_cache.pop(next(iter(nearest_cache)))
        return nearest_cache[fine]

    @app.get("/api/alerts/{alert_id}")
    def alert_detail(alert_id: int):
        got = store.get(alert_id)
        if got is None:
            raise ApiError(404, f"alert {alert_id} is not (or no longer) in the console's buffer")
        row, eve = got
        pc = eve.get("packetclip") or {}
        concepts = [{**c, "url": attack_url(c.get("attack_id"))} for c in pc.get("top_concepts") or []]
        return {"alert": row, "eve": eve, "explanation": pc.get("explanation"),
                "class_definition": pc.get("class_definition"), "concepts": concepts,
                "timeline": timelines.get(row["flow_id"]) if row.get("flow_id") is not None else None,
                "nearest_description": pc.get("nearest_description"),
                "nearest": f"/api/alerts/{alert_id}/nearest" if workspace is not None else None}

    @app.get("/api/alerts/{alert_id}/nearest")
    def alert_nearest(alert_id: int):
        """The described workspace flows nearest to the alert's class in the aligned space (a search)."""
        if workspace is None:
            raise ApiError(409, "nearest descriptions need a workspace: start the console with --workspace WS")
        got = store.get(alert_id)
        if got is None:
            raise ApiError(404, f"alert {alert_id} is not (or no longer) in the console's buffer")
        pc = got[1].get("packetclip") or {}
        return {"alert_id": alert_id, "nearest": nearest(pc.get("fine_class"), pc.get("class_definition"))}

    @app.get("/api/search")
    def search(q: str = Query(..., min_length=1, max_length=500), top: int = Query(20, ge=1, le=200)):
        if workspace is None:
            raise ApiError(409, "search needs a workspace: start the console with --workspace WS")
        if not q.strip():
            raise ApiError(422, "q: the search query is empty")
        t0 = time.perf_counter()
        hits = workspace.search(q, top=top)
        return {"query": q, "hits": hits, "seconds": round(time.perf_counter() - t0, 4)}

    @app.get("/api/flows/{flow_id}")
    def flow(flow_id: int):
        if workspace is None:
            raise ApiError(409, "flow details need a workspace: start the console with --workspace WS")
        got = workspace.flow(flow_id)
        if got is None:
            raise ApiError(404, f"flow {flow_id} is not in workspace {workspace.name}")
        return got

    @app.get("/api/kg/{mission}.svg")
    def kg(mission: str, highlight: str = Query("", max_length=200)):
        if mission not in MISSIONS:
            raise ApiError(404, f"no knowledge graph for mission {mission!r}; one of {', '.join(MISSIONS)}")
        techs = tuple(t for t in highlight.split(",") if t)
        bad = [t for t in techs if not re.fullmatch(r"T\d{4}(\.\d{3})?", t)]
        if bad:
            raise ApiError(422, f"highlight: ATT&CK technique ids like T1499.001, not {bad[0]!r}")
        return Response(kg_svg(mission, techs), media_type="image/svg+xml")

    @app.get("/api/model")
    def model():
        return {"card": model_card, "report": "/report/" if report is not None else None}

    @app.get("/report/", include_in_schema=False)
    def report_index():
        return report_file("index.html")

    @app.get("/report/{name:path}", include_in_schema=False)
    def report_file(name: str):
        if report is None:
            raise ApiError(404, "no reproduce report: start the console with --report FOLDER")
        found = report.lookup(name)
        if found is None:
            raise ApiError(404, f"the report has no file {name!r}")
        path, kind = found
        return Response(path.read_bytes(), media_type=kind)

    @app.get("/api/stream")
    async def stream(request: Request):
        loop = asyncio.get_running_loop()
        sub = store.subscribe(loop)
        if sub is None:
            raise ApiError(503, f"too many stream clients (at most {store.max_clients})")

        async def events():
            try:
                yield {"event": "hello", "data": json.dumps(store.counts())}
                next_rates = time.monotonic() + rates_every_s
                while True:
                    try:
                        await asyncio.wait_for(sub.wake.wait(), timeout=max(0.05, next_rates - time.monotonic()))
                    except asyncio.TimeoutError:
                        pass
                    if sub.dropped:
                        yield {"event": "dropped", "data": json.dumps({"reason": "client too slow; reload"})}
                        return
                    while True:
                        items = sub.take(sub_batch)
                        if not items:
                            break
                        yield {"event": "alerts", "data": "[" + ",".join(items) + "]"}
                    if time.monotonic() >= next_rates:
                        next_rates = time.monotonic() + rates_every_s
                        last = rates.series(1)
                        yield {"event": "rates", "data": json.dumps({"sample": last[0] if last else None,
                                                                     "counts": store.counts()})}
            finally:
                store.unsubscribe(sub)

        return EventSourceResponse(events(), ping=15, send_timeout=30)

    sub_batch = max(1, int(sse_batch))
    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts)
    return app
