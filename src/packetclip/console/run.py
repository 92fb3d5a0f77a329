"""``packetclip serve`` as library calls: check the options, build the console's objects, bind, run uvicorn."""

from __future__ import annotations

import ipaddress
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from packetclip.errors import PacketClipError

MIN_TOKEN_CHARS = 16


class ConsoleOptionError(PacketClipError):
    """A ``serve`` option that would make the console unsafe or cannot work."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Loopback needs nothing; any other address needs a token long enough not to be guessed."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConsoleOptionError(f"--token must have at least {MIN_TOKEN_CHARS} characters "
                                 "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    if not is_loopback(host) and token is None:
        raise ConsoleOptionError(f"--host {host} exposes the console beyond this machine: give --token TOKEN "
                                 "(every request must then carry it)")


@dataclass
class Console:
    app: object
    store: object
    detection: object | None
    workspace: object | None = None
    report: object | None = None

    def summary(self) -> str:
        det = self.detection
        parts = ["detect on " + ", ".join(det.status()["sources"]) if det is not None else "no live source",
                 f"search over {self.workspace.name}" if self.workspace is not None else "no search (--workspace)",
                 "reproduce report" if self.report is not None else "no report"]
        return "; ".join(parts)


def build_console(*, model: str | Path | None = None, workspace: str | Path | None = None, replay=(),
                  interface: str | None = None, speed: float = 0.0, report: str | Path | None = None,
                  token: str | None = None, host: str = "127.0.0.1", buffer: int = 20_000,
                  fpr: float | None = None) -> Console:
    """Every object the page serves, checked now so that a bad option is one line before anything listens."""
    from packetclip.console.live import AlertStore, LiveDetection, Rates, Timelines
    from packetclip.console.server import LOOPBACK_HOSTS, create_app
    from packetclip.console.services import ReportFiles, WorkspaceService, model_card

    check_exposure(host, token)
    if replay and interface:
        raise ConsoleOptionError("give --replay CAPTURE... or --interface IF, not both")
    card = model_card(model)
    store, rates, timelines = AlertStore(buffer), Rates(), Timelines()
    detection = None
    if replay or interface:
        detection = LiveDetection(store, rates, timelines, model=model, captures=list(replay), interface=interface,
                                  speed=speed, fpr=fpr)
    ws = None
    if workspace is not None:
        ws = WorkspaceService(workspace)
        ws.check()
    files = ReportFiles(report) if report is not None else None
    allowed = (*LOOPBACK_HOSTS, host) if is_loopback(host) and token is None else None
    app = create_app(store, rates=rates, timelines=timelines, detection=detection, workspace=ws, model_card=card,
                     report=files, token=token, allowed_hosts=allowed)
    return Console(app, store, detection, ws, files)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (``port`` 0: a free one), so a taken port is one line, not a server log."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        raise ConsoleOptionError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(console: Console, *, host: str, port: int, announce=None) -> None:
    """Listen, start detection, serve until interrupted; ``announce(url)`` is called once listening."""
    import uvicorn

    sock = bind(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    url = f"http://{shown}:{actual}/"
    config = uvicorn.Config(console.app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                            lifespan="off")
    server = uvicorn.Server(config)
    if console.detection is not None:
        console.detection.start()
    (announce or (lambda u: print(f"console: {u}", file=sys.stderr, flush=True)))(url)
    try:
        server.run(sockets=[sock])
    finally:
        if console.detection is not None:
            console.detection.stop(timeout=2.0)
        sock.close()
