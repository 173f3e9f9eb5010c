"""The sandbox's HTTP server: routing, auth, faults on the way in and out, the request ledger.

Plain ``http.server`` with a cap on concurrent connections, read timeouts and bounded
bodies, so a misbehaving client cannot exhaust the machine. ``serve()`` runs until its
``stop`` event is set (the management command sets it on SIGTERM/SIGINT).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from runs.sandbox import api, api_runs
from runs.sandbox.callbacks import Sender
from runs.sandbox.config import Config
from runs.sandbox.faults import Faults
from runs.sandbox.files import Links
from runs.sandbox.lifecycle import Engine
from runs.sandbox.scheduler import Scheduler
from runs.sandbox.state import Store
from runs.sandbox.util import ApiError, iso_z, now
from runs.sandbox.web import Answer, Request

logger = logging.getLogger("runs.sandbox")

KEY = re.compile(r"rf_(live|svc)_[A-Za-z0-9]{8,200}")
_ID = r"(?P<id>[0-9a-fA-F-]{36}|any)"
_SUB = r"(?P<sub>[0-9a-fA-F-]{36})"
_MODEL = r"(?P<model>[A-Za-z0-9][A-Za-z0-9._~-]*(?:/[A-Za-z0-9][A-Za-z0-9._~-]*){1,9})"
_ERRORS = {
    429: ("RATE_LIMITED", "Rate limit exceeded: the sandbox's rate-limit fault is on."),
    500: ("INTERNAL_ERROR", "Internal server error (sandbox fault)."),
    502: ("BAD_GATEWAY", "Bad gateway (sandbox fault)."),
    503: ("SERVICE_UNAVAILABLE", "The service is temporarily unavailable (sandbox fault)."),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout (sandbox fault)."),
}

Handler = Callable[..., Answer]


class Route:
    def __init__(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        auth: bool = True,
        scope: str = "other",
    ) -> None:
        self.method = method
        self.pattern = re.compile(pattern + r"/?\Z")
        self.handler = handler
        self.auth = auth
        self.scope = scope


ROUTES = [
    Route("GET", r"/v1/health", api.health, auth=False),
    Route("GET", r"/v1/auth/me", api.me),
    Route("GET", r"/v1/billing/balance", api.balance),
    Route("GET", r"/v1/models", api.list_models),
    Route("GET", r"/v1/public/models", api.list_models, auth=False),
    Route("POST", rf"/v1/models/{_MODEL}/runs", api_runs.create_run, scope="create"),
    Route("POST", rf"/v1/models/{_MODEL}/batches", api_runs.create_batch, scope="create"),
    Route("GET", rf"/v1/models/{_MODEL}/examples", api.model_examples),
    Route("GET", rf"/v1/models/{_MODEL}", api.get_model),
    Route("GET", r"/v1/runs", api_runs.list_runs, scope="read"),
    Route("GET", r"/v1/runs/statuses", api_runs.statuses),
    Route("GET", rf"/v1/runs/{_ID}/logs/{_SUB}", api_runs.logs, scope="read"),
    Route("GET", rf"/v1/runs/{_ID}/logs", api_runs.logs, scope="read"),
    Route("GET", rf"/v1/runs/{_ID}/node-runs/{_SUB}", api_runs.node_runs, scope="read"),
    Route("GET", rf"/v1/runs/{_ID}/node-runs", api_runs.node_runs, scope="read"),
    Route("GET", rf"/v1/runs/{_ID}/callback", api_runs.callback_history, scope="read"),
    Route("POST", rf"/v1/runs/{_ID}/callback-redeliveries", api_runs.redeliver),
    Route("PATCH", rf"/v1/runs/{_ID}/feedback", api_runs.feedback),
    Route("GET", rf"/v1/runs/{_ID}", api_runs.get_run, scope="read"),
    Route("POST", rf"/v1/admin/runs/{_ID}/cancellation", api_runs.admin_cancel),
    Route("GET", rf"/v1/batches/{_ID}/items/{_SUB}", api_runs.batch_items, scope="read"),
    Route("GET", rf"/v1/batches/{_ID}/items", api_runs.batch_items, scope="read"),
    Route("GET", rf"/v1/batches/{_ID}/callback", api_runs.batch_callback_history, scope="read"),
    Route("POST", rf"/v1/batches/{_ID}/callback-redeliveries", api_runs.batch_redeliver),
    Route("GET", rf"/v1/batches/{_ID}", api_runs.get_batch, scope="read"),
    Route("POST", r"/v1/asset-uploads", api.create_upload),
    Route("POST", rf"/v1/asset-uploads/{_ID}/confirmations", api.confirm_upload),
    Route("GET", rf"/v1/assets/{_ID}", api.get_asset),
    Route("POST", r"/v1/callback-secrets", api.create_secret),
    Route("GET", r"/v1/callback-secrets", api.list_secrets),
    Route("GET", rf"/v1/callback-secrets/{_ID}", api.get_secret),
    Route("PATCH", rf"/v1/callback-secrets/{_ID}", api.update_secret),
    Route("DELETE", rf"/v1/callback-secrets/{_ID}", api.delete_secret),
    Route("GET", r"/_sandbox/faults", api.get_faults, auth=False),
    Route("POST", r"/_sandbox/faults", api.set_faults, auth=False),
    Route("POST", r"/_sandbox/reset", api.reset, auth=False),
    Route("GET", r"/_sandbox/ledger", api.ledger, auth=False),
]


class App:
    """Everything a handler needs, wired once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config)
        self.faults = Faults()
        self.scheduler = Scheduler()
        self.links = Links(config, self.store)
        self.sender = Sender(self.store, config, self.faults, self.scheduler)
        self.engine = Engine(
            self.store, config, self.faults, self.sender, self.scheduler, self.links
        )

    def close(self) -> None:
        self.scheduler.stop()
        self.sender.close()
        self.engine.close()
        self.store.close()

    def dispatch(self, request: Request) -> Answer:
        allowed = []
        for route in ROUTES:
            match = route.pattern.match(request.path)
            if not match:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            if route.auth:
                request.org = self._authenticate(request)
            return self._call(route, request, match.groupdict())
        if allowed:
            raise ApiError(
                405, "METHOD_NOT_ALLOWED", f"Use {' or '.join(sorted(set(allowed)))} here."
            )
        raise ApiError(404, "NOT_FOUND", "No such endpoint in the Runflow API.")

    def _call(self, route: Route, request: Request, groups: dict[str, Any]) -> Answer:
        args = [groups[name] for name in ("model", "id") if groups.get(name) is not None]
        if groups.get("sub"):
            args.append(groups["sub"])
        fault = self.faults.error_for(route.scope) if route.auth else None
        if fault is not None and not fault.after_create:
            request.fault = f"error {fault.status}"
            raise _fault_error(fault.status, fault.retry_after)
        answer = route.handler(self, request, *args)
        hang = self.faults.hang_for(route.scope) if route.auth else 0.0
        if hang:
            request.fault = f"hang {hang:g}s"
            time.sleep(hang)
        if fault is not None:
            # The work was done, yet the caller hears an error: the outcome is unknown to it.
            request.fault = f"error {fault.status} after create"
            raise _fault_error(fault.status, fault.retry_after)
        return answer

    def _authenticate(self, request: Request) -> Any:
        header = request.headers.get("Authorization") or ""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not KEY.fullmatch(key.strip()):
            raise ApiError(
                401,
                "UNAUTHORIZED",
                "Missing or invalid API key: send Authorization: Bearer rf_live_….",
            )
        org = self.store.org_for_key(key.strip())
        wanted = request.headers.get("X-Organization-Id")
        if wanted and wanted != org.id:
            raise ApiError(
                403,
                "ORGANIZATION_MEMBERSHIP_REQUIRED",
                "This key does not belong to that organization.",
            )
        return org


def _fault_error(status: int, retry_after: int | None) -> ApiError:
    code, message = _ERRORS[status]
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return ApiError(status, code, message, headers=headers)


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RunflowSandbox/1.0"
    timeout = 30  # seconds a connection may sit idle or trickle a request
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True
    server: SandboxServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        app = self.server.app
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        request = Request(
            self.command,
            path,
            parse_qs(parts.query),
            self.headers,
            self.rfile,
            app.config.max_body_bytes,
            request_id=f"req_{uuid.uuid4().hex[:20]}",
        )
        owner: str | None = None
        try:
            if path.startswith("/files/"):
                file_answer = app.links.serve(self.command, path, request.query, request)
                answer = Answer(
                    file_answer.status,
                    file_answer.body or file_answer.message.encode(),
                    file_answer.content_type,
                    path=file_answer.path,
                )
                owner = file_answer.org_id
            else:
                answer = app.dispatch(request)
        except ApiError as problem:
            answer = Answer.json(problem.status, problem.body(), **problem.headers)
        except Exception:
            logger.exception("sandbox handler failed on %s %s", self.command, path)
            answer = Answer.json(
                500,
                {
                    "code": "INTERNAL_ERROR",
                    "message": "The sandbox failed; see its log.",
                    "errors": None,
                },
            )
        self._finish_body(request)
        self._write(answer, request)
        if not path.startswith("/_sandbox/"):
            # File links are presigned: their query is a credential, so it stays out.
            shown = parts.path if path.startswith("/files/") else self.path
            app.store.request(
                {
                    "at": iso_z(now()),
                    "method": self.command,
                    "path": shown[:500],
                    "status": answer.status,
                    "org_id": request.org.id if request.org else owner,
                    "request_id": request.request_id,
                    "idempotency_key": self.headers.get("Idempotency-Key"),
                    "fault": request.fault,
                    "duration_ms": int((time.monotonic() - started) * 1000),
                }
            )

    def _finish_body(self, request: Request) -> None:
        # An unread body would be taken for the next request on this connection: drain a
        # small one, close the connection after a large one.
        if request.consumed:
            return
        length = request.content_length()
        if length is None or length > 1024 * 1024:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    def _write(self, answer: Answer, request: Request) -> None:
        try:
            size = answer.path.stat().st_size if answer.path is not None else len(answer.body)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(0 if answer.status == 204 else size))
            self.send_header("X-Request-Id", request.request_id)
            if self.close_connection:
                self.send_header("Connection", "close")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command == "HEAD" or answer.status == 204:
                return
            if answer.path is not None:
                with answer.path.open("rb") as source:
                    while chunk := source.read(64 * 1024):
                        self.wfile.write(chunk)
            else:
                self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError, FileNotFoundError):
            self.close_connection = True


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, app: App) -> None:
        self.app = app
        self.slots = threading.BoundedSemaphore(app.config.max_connections)
        family = socket.AF_INET6 if ":" in app.config.host else socket.AF_INET
        self.address_family = family
        super().__init__((app.config.host, app.config.port), SandboxHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=5):
            # Too many open connections: refuse this one quickly rather than pile up threads.
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(
    config: Config, stop: threading.Event, ready: Callable[[str], None] | None = None
) -> None:
    """Run the sandbox until ``stop`` is set, then shut everything down cleanly."""
    app = App(config)
    server = SandboxServer(app)
    if config.port == 0:
        config.port = server.server_address[1]
        config.public_url = f"http://{config.host}:{config.port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="sandbox-http", daemon=True
    )
    thread.start()
    if ready is not None:
        ready(config.public_url)
    try:
        # Wake up now and then: a signal delivered to another thread only runs its Python
        # handler when the main thread executes bytecode, never while it blocks on a lock.
        while not stop.wait(0.25):
            pass
    finally:
        server.shutdown()
        server.server_close()
        app.close()
        thread.join(timeout=5)
