"""A small OpenAI-compatible chat server over any local backend (SmolLM2 by default).

It lets tools that speak OpenAI's protocol (including our own ``openai`` backend) use the offline model,
and gives the ``openai`` backend a real server to be tested against. Standard library only:
``ThreadingHTTPServer`` on 127.0.0.1 by default; requests to one backend are serialised by its lock.

Endpoints: ``POST /v1/chat/completions`` (non-streaming), ``GET /v1/models``, ``GET /health``.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from packetclip.errors import PacketClipError
from packetclip.language.chat import ChatBackend, check_messages, check_sampling, get_chat_backend

MAX_BODY_BYTES = 1 << 20


class ChatServer(ThreadingHTTPServer):
    """Serves one chat backend under the OpenAI chat-completions protocol.

    ``model_name`` is what ``/v1/models`` lists and answers carry; requests may name any model (one is served).
    ``api_key``: when set, requests must send ``Authorization: Bearer <key>``.
    """

    daemon_threads = True

    def __init__(self, backend: ChatBackend, host: str = "127.0.0.1", port: int = 8000, *,
                 model_name: str | None = None, api_key: str | None = None,
                 log: Callable[[str], None] | None = None):
        self.backend = backend
        self.model_name = model_name or backend.name
        self.api_key = api_key
        self.log = log
        self.requests_served = 0
        self._count_lock = threading.Lock()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            # the socket layer would raise OverflowError with a traceback-shaped message
            raise PacketClipError(f"--port must be in 1..65535 (0 from Python: any free port), got {port!r}")
        try:
            super().__init__((host, port), _Handler)
        except (OSError, OverflowError) as err:
            raise PacketClipError(f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (tests, notebooks); stop with :meth:`stop`."""
        thread = threading.Thread(target=self.serve_forever, name="packetclip-chat-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": None}})

    def _authorised(self) -> bool:
        if not self.server.api_key:
            return True
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if hmac.compare_digest(given.encode(), self.server.api_key.encode()):
            return True
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong API key", "authentication_error")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            if self._authorised():
                self._send(HTTPStatus.OK, {"object": "list", "data": [
                    {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "packetclip"}]})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {path}")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}")
            return
        if not self._authorised():
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        if not 0 < length <= MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST,
                        f"request body must be 1..{MAX_BODY_BYTES} bytes")
            return
        try:
            messages, kwargs = parse_chat_request(self.rfile.read(length))
        except PacketClipError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        try:
            answer = self.server.backend.complete(messages, **kwargs)
        except PacketClipError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        except Exception as err:  # noqa: BLE001 - a model failure must answer 500, not drop the connection
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}", "server_error")
            return
        with self.server._count_lock:
            self.server.requests_served += 1
        self._send(HTTPStatus.OK, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": answer.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                      "total_tokens": answer.prompt_tokens + answer.completion_tokens},
        })


def parse_chat_request(body: bytes) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Messages and sampling arguments of an OpenAI chat request body; anything else is a PacketClipError."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise PacketClipError(f"the body is not valid JSON ({type(err).__name__})") from None
    if not isinstance(request, dict):
        raise PacketClipError("the body must be a JSON object")
    kwargs = _sampling_arguments(request)
    check_sampling(kwargs["max_tokens"], kwargs["temperature"], kwargs["seed"])
    return check_messages(request.get("messages")), kwargs


def _sampling_arguments(request: dict) -> dict[str, Any]:
    """max_tokens / temperature / seed from an OpenAI request; unsupported features are refused clearly."""
    if request.get("stream"):
        raise PacketClipError("streaming is not supported by this server; send stream=false")
    if request.get("n", 1) not in (1, None):
        raise PacketClipError("only n=1 is supported")
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens", 128))
    temperature = request.get("temperature", 1.0)
    seed = request.get("seed", 0)
    if seed is None:
        seed = 0
    if temperature is None:
        temperature = 1.0
    if max_tokens is None:
        max_tokens = 128
    return {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}


def make_server(backend: str | ChatBackend = "smollm2", *, host: str = "127.0.0.1", port: int = 8000,
                api_key: str | None = None, model_name: str | None = None,
                log: Callable[[str], None] | None = None, **backend_kwargs: Any) -> ChatServer:
    """A :class:`ChatServer` for a backend given by name (``smollm2``) or as an object. ``port=0`` picks a free port."""
    if isinstance(backend, str):
        if backend.strip().lower() == "openai":
            raise PacketClipError("the server serves a local backend; 'openai' would only forward to another server")
        backend = get_chat_backend(backend, **backend_kwargs)
    return ChatServer(backend, host, port, model_name=model_name, api_key=api_key, log=log)
