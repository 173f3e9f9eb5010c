"""The one seam through which the site speaks HTTP to Runflow (STYLE.md §4).

One ``RunflowClient`` per base URL and key, over one ``httpx.Client``. Every call has
explicit connect/read/write/pool timeouts and an overall deadline; connection errors, 429 and
5xx are retried with capped full-jitter backoff (``retry.py``); every other failure becomes
one of the exceptions in ``errors.py`` with a message a person can act on.

Creating things is where retries can hurt: a create whose answer was lost may have happened.
Such calls are sent with an Idempotency-Key and are retried only when Runflow certainly did
not process them (nothing was sent, or 429/503). A lost answer (read timeout, 500/502/504)
raises ``OutcomeUnknown``: the caller looks the run up by ``client_ref`` before any second
POST, so one launch never makes two upstream runs (R1).
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Self

import httpx
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from runs.runflow import checks, retry
from runs.runflow.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    ProtocolError,
    RunflowError,
    Unavailable,
    error_from_response,
    plural,
    retry_after_seconds,
)
from runs.runflow.pagination import iter_pages
from runs.runflow.schemas import (
    AssetInfo,
    AssetUploadSession,
    Balance,
    BatchInfo,
    BatchItemInfo,
    CallbackDeliveryInfo,
    CallbackSecretInfo,
    Health,
    Me,
    ModelInfo,
    NodeRunInfo,
    Page,
    RunInfo,
    RunLogInfo,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
DEFAULT_DEADLINE = 60.0  # seconds for a whole call, retries and waits included
UPLOAD_DEADLINE = 300.0  # a 50 MiB PUT on a slow link

# Errors raised before a byte of the request left this machine: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# Errors that say the request itself is wrong: another try fails the same way.
_BROKEN_REQUEST = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The one SSL context of this process, shared by every client.

    Building one loads the whole CA bundle (~25 ms), which cost more than the request itself
    when a client is made per call. A context holds only the trust store and TLS settings,
    never a key or a session, so sharing it between clients, keys and threads is safe; the
    lock makes two threads that start at once build one, not two.
    """
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            # httpx's own default: certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR if set.
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


@functools.cache
def site_version() -> str:
    """The site's version from pyproject.toml (the project is not installed as a package)."""
    try:
        with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "dev"


class RunflowClient:
    """Typed access to every Runflow endpoint the site uses (RUNFLOW_API.md table)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = retry.MAX_ATTEMPTS,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 1 <= max_attempts <= 10:
            raise ValueError("max_attempts must be between 1 and 10")
        if None in (timeout.connect, timeout.read, timeout.write, timeout.pool):
            raise ValueError("every timeout must be set: a call without one can hang a worker")
        self.base_url = checks.api_base(base_url)
        if not checks.is_api_key(api_key):
            raise AuthenticationFailed(
                "The team's Runflow API key is malformed. Enter it again on the team's Runflow "
                "connection page."
            )
        self._key_hint = api_key[-4:]
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._deadline = deadline
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"runflow-site/{site_version()}",
                "Accept": "application/json",
            },
            timeout=timeout,
            transport=transport,
            verify=shared_ssl_context(),
            # A redirect would be a misconfigured URL; following it could carry the key
            # somewhere else. It becomes a ProtocolError with advice instead.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"RunflowClient({self.base_url!r}, key='…{self._key_hint}')"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- account and status ----

    def health(self) -> Health:
        return self._get("/v1/health", Health)

    def me(self) -> Me:
        return self._get("/v1/auth/me", Me, params={"embed": "memberships"})

    def balance(self) -> Balance:
        return self._get("/v1/billing/balance", Balance)

    # ---- the catalog ----

    def list_models(self, limit: int = 100, cursor: str | None = None) -> Page[ModelInfo]:
        """One page of the catalog. A model entry we cannot read is skipped and logged."""
        params = checks.list_params(limit, cursor)
        page = self._get("/v1/models", Page[dict[str, Any]], params=params)
        models = [model for model in map(_catalog_entry, page.items) if model is not None]
        return Page[ModelInfo](
            items=models, first=page.first, next=page.next, previous=page.previous
        )

    def iter_models(self) -> Iterator[ModelInfo]:
        return iter_pages(lambda cursor: self.list_models(checks.LIST_LIMIT, cursor))

    def get_model(self, model_id: str) -> ModelInfo:
        return self._get(f"/v1/models/{checks.model_path(model_id)}", ModelInfo)

    # ---- runs ----

    def create_run(
        self,
        model_id: str,
        *,
        input: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> RunInfo:
        """Create and dispatch a run. Raises ``OutcomeUnknown`` when the answer was lost."""
        body = {
            "input": dict(input),
            "metadata": dict(metadata) if metadata is not None else None,
            "callback_url": checks.callback_url(callback_url),
            "client_ref": checks.client_ref(client_ref),
        }
        return self._call(
            "POST",
            f"/v1/models/{checks.model_path(model_id)}/runs",
            RunInfo,
            json=checks.without_none(body),
            idempotency_key=checks.idempotency_key(idempotency_key or client_ref),
        )

    def get_run(self, run_id: str | uuid.UUID) -> RunInfo:
        return self._get(f"/v1/runs/{checks.uuid_text(run_id, 'run id')}", RunInfo)

    def find_runs(self, *, client_ref: str, limit: int = 20) -> list[RunInfo]:
        """Runs carrying ``client_ref`` (newest first): how a lost create is reconciled.

        The results are filtered again here: if Runflow ever ignored or misread the filter,
        reconciling against somebody else's run would be far worse than finding nothing.
        """
        ref = checks.client_ref(client_ref)
        params = {
            "q": f"client_ref.EQ:'{ref}'",
            "sort_by": "created_at:desc",
            "limit": max(1, min(limit, checks.LIST_LIMIT)),
        }
        page = self._get("/v1/runs", Page[RunInfo], params=params)
        return [run for run in page.items if run.client_ref == ref]

    def get_logs(self, run_id: str | uuid.UUID) -> list[RunLogInfo]:
        path = f"/v1/runs/{checks.uuid_text(run_id, 'run id')}/logs"
        return list(iter_pages(self._pager(path, Page[RunLogInfo])))

    def get_node_runs(self, run_id: str | uuid.UUID) -> list[NodeRunInfo]:
        path = f"/v1/runs/{checks.uuid_text(run_id, 'run id')}/node-runs"
        return list(iter_pages(self._pager(path, Page[NodeRunInfo])))

    def callback_history(self, run_id: str | uuid.UUID) -> list[CallbackDeliveryInfo]:
        """Runflow's record of the callbacks it sent for a run (a bare JSON array)."""
        return self._get(f"/v1/runs/{checks.uuid_text(run_id, 'run id')}/callback", _DELIVERIES)

    def redeliver_callback(self, run_id: str | uuid.UUID) -> CallbackDeliveryInfo:
        # Safe to retry: a second delivery of the same state is a duplicate the site ignores.
        path = f"/v1/runs/{checks.uuid_text(run_id, 'run id')}/callback-redeliveries"
        return self._call("POST", path, CallbackDeliveryInfo)

    def send_feedback(
        self, run_id: str | uuid.UUID, *, is_positive: bool | None, reason: str | None = None
    ) -> RunInfo:
        path = f"/v1/runs/{checks.uuid_text(run_id, 'run id')}/feedback"
        return self._call(
            "PATCH", path, RunInfo, json={"is_positive": is_positive, "reason": reason}
        )

    def cancel_run(self, run_id: str | uuid.UUID, *, reason: str | None) -> RunInfo:
        """Admin-only cancel (needs an ``rf_svc_`` key); a terminal run comes back unchanged."""
        path = f"/v1/admin/runs/{checks.uuid_text(run_id, 'run id')}/cancellation"
        body = {"reason": checks.cancel_reason(reason)}
        # Safe to repeat: a run that is already terminal comes back unchanged (200).
        return self._call("POST", path, RunInfo, json=body)

    # ---- batches ----

    def create_batch(
        self,
        model_id: str,
        *,
        inputs: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchInfo:
        """One batch of 1 to 100 inputs (each may carry its own ``client_ref``)."""
        body = {
            "input": checks.batch_inputs(inputs),
            "metadata": dict(metadata) if metadata is not None else None,
            "callback_url": checks.callback_url(callback_url),
        }
        return self._call(
            "POST",
            f"/v1/models/{checks.model_path(model_id)}/batches",
            BatchInfo,
            json=checks.without_none(body),
            idempotency_key=checks.idempotency_key(idempotency_key),
        )

    def get_batch(self, batch_id: str | uuid.UUID) -> BatchInfo:
        return self._get(f"/v1/batches/{checks.uuid_text(batch_id, 'batch id')}", BatchInfo)

    def iter_batch_items(self, batch_id: str | uuid.UUID) -> Iterator[BatchItemInfo]:
        path = f"/v1/batches/{checks.uuid_text(batch_id, 'batch id')}/items"
        return iter_pages(self._pager(path, Page[BatchItemInfo]))

    # ---- assets ----

    def upload_asset(self, filename: str, content_type: str, data: bytes) -> AssetInfo:
        """Upload an input file in Runflow's three steps; pass ``.url`` (or ``.ref``) as input."""
        name = checks.upload(filename, content_type, data)
        session = self._call(
            "POST",
            "/v1/asset-uploads",
            AssetUploadSession,
            json={"filename": name, "mime_type": content_type, "size_bytes": len(data)},
        )
        self._put_bytes(session.upload_url, content_type, data)
        return self._call(
            "POST", f"/v1/asset-uploads/{session.asset_id}/confirmations", AssetInfo, json={}
        )

    def _put_bytes(self, upload_url: str, content_type: str, data: bytes) -> None:
        request = self._http.build_request(
            "PUT", upload_url, content=data, headers={"Content-Type": content_type}
        )
        # The upload URL is presigned storage, not Runflow's API: our key must not go there.
        del request.headers["Authorization"]
        try:
            self._send(request, unsafe=False, deadline=UPLOAD_DEADLINE)
        except RunflowError as error:
            if error.status in (401, 403):
                raise RunflowError(
                    f"The upload link from Runflow was refused ({error.status}); it may have "
                    "expired. Upload the file again.",
                    status=error.status,
                ) from error
            raise

    # ---- callback secrets ----

    def create_callback_secret(self, label: str | None = None) -> CallbackSecretInfo:
        """A new signing secret; ``plain_secret`` is in this answer and never again."""
        body = {"label": (label or "runflow-site")[:255]}
        # unsafe: a lost answer holds a secret we can never read again; the caller decides.
        return self._call(
            "POST", "/v1/callback-secrets", CallbackSecretInfo, json=body, unsafe=True
        )

    def get_callback_secret(self, secret_id: str | uuid.UUID) -> CallbackSecretInfo:
        return self._get(
            f"/v1/callback-secrets/{checks.uuid_text(secret_id, 'secret id')}", CallbackSecretInfo
        )

    def update_callback_secret(
        self, secret_id: str | uuid.UUID, **fields: str | bool | None
    ) -> CallbackSecretInfo:
        """Rename (``label=``) or promote (``is_current=True``) a secret."""
        unknown = set(fields) - {"label", "is_current"}
        if unknown:
            raise TypeError(f"update_callback_secret() got unknown fields: {sorted(unknown)}")
        path = f"/v1/callback-secrets/{checks.uuid_text(secret_id, 'secret id')}"
        return self._call("PATCH", path, CallbackSecretInfo, json=fields)

    # ---- the core: one request, its retries, its errors ----

    def _get[M](
        self, path: str, model: type[M] | TypeAdapter[M], *, params: Mapping[str, Any] | None = None
    ) -> M:
        return self._call("GET", path, model, params=params)

    def _pager[M](self, path: str, model: type[Page[M]]) -> Callable[[str | None], Page[M]]:
        return lambda cursor: self._get(
            path, model, params=checks.list_params(checks.LIST_LIMIT, cursor)
        )

    def _call[M](
        self,
        method: str,
        path: str,
        model: type[M] | TypeAdapter[M],
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        unsafe: bool | None = None,
    ) -> M:
        """Send, retry as allowed, and read the JSON answer as ``model``."""
        # A call that carries an Idempotency-Key creates something: it is unsafe to repeat.
        unsafe = bool(idempotency_key) if unsafe is None else unsafe
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        request = self._http.build_request(method, path, json=json, params=params, headers=headers)
        response = self._send(request, unsafe=unsafe)
        try:
            return _parse(model, _json_of(response), f"{method} {request.url.path}")
        except ProtocolError as error:
            if not unsafe:
                raise
            # Created (2xx), but we cannot tell what: reconcile as if the answer were lost.
            raise OutcomeUnknown(
                f"Runflow accepted the request ({response.status_code}) but its answer could "
                "not be read. Look it up by its client reference before sending it again.",
                status=response.status_code,
            ) from error

    def _send(
        self, request: httpx.Request, *, unsafe: bool, deadline: float | None = None
    ) -> httpx.Response:
        """One request with retries; the successful (2xx) response, or an exception."""
        give_up_at = self._clock() + (deadline or self._deadline)
        error: RunflowError | None = None
        for attempt in range(1, self._max_attempts + 1):
            remaining = give_up_at - self._clock()
            if remaining <= 0:
                break
            request.extensions["timeout"] = self._attempt_timeout(remaining)
            started = self._clock()
            try:
                response = self._http.send(request)
            except httpx.HTTPError as exc:
                error, retry_after = self._transport_error(exc, request, unsafe, attempt), None
                error.__cause__ = exc
            else:
                self._log(request, response.status_code, attempt, started)
                if response.is_success:
                    return response
                error = error_from_response(response, attempts=attempt)
                if not self._may_retry(response.status_code, unsafe):
                    raise self._lost_if_unsafe(error, unsafe, response.status_code)
                retry_after = retry_after_seconds(response)
            if not error.retryable or attempt == self._max_attempts:
                break
            wait = retry.wait_before_retry(attempt, retry_after, rng=self._rng)
            if self._clock() + wait > give_up_at:
                break  # waiting would pass the deadline: say so now, the caller reschedules
            logger.warning(
                "Runflow %s %s failed (%s); retry %d in %.1f s",
                request.method,
                request.url.path,
                error.status or type(error).__name__,
                attempt + 1,
                wait,
            )
            self._sleep(wait)
        raise error or Unavailable(
            "Runflow did not answer within the time allowed for this call. Try again in a few "
            "minutes."
        )

    def _may_retry(self, status: int, unsafe: bool) -> bool:
        allowed = retry.NOT_PROCESSED_STATUSES if unsafe else retry.RETRY_STATUSES
        return status in allowed

    def _lost_if_unsafe(self, error: RunflowError, unsafe: bool, status: int) -> RunflowError:
        # A 500/502/504 to a create may come after the run was stored at Runflow.
        if unsafe and status in retry.RETRY_STATUSES:
            return OutcomeUnknown(
                f"Runflow failed while handling the request ({status}), so it may or may not "
                "have been created. Look it up by its client reference before sending it again.",
                status=status,
                code=error.code,
                request_id=error.request_id,
            )
        return error

    def _transport_error(
        self, exc: httpx.HTTPError, request: httpx.Request, unsafe: bool, attempt: int
    ) -> RunflowError:
        host = request.url.host
        self._log(request, type(exc).__name__, attempt, None)
        if isinstance(exc, _BROKEN_REQUEST):
            return RunflowError(
                f"The request to Runflow could not be built ({type(exc).__name__})."
            )
        if isinstance(exc, _NOT_SENT):
            return Unavailable(
                f"Could not reach Runflow at {host} ({_describe(exc)}, "
                f"{plural(attempt, 'attempt')}). "
                "Check the API URL on the connection page and the network; nothing was sent."
            )
        if unsafe:
            # Not retryable, so the loop stops here: no second POST for a lost answer.
            return OutcomeUnknown(
                f"The answer from Runflow was lost ({_describe(exc)}) after the request was "
                "sent, so it may or may not have been created. Look it up by its client "
                "reference before sending it again."
            )
        return Unavailable(
            f"Runflow at {host} did not answer in time ({_describe(exc)}, "
            f"{plural(attempt, 'attempt')}). "
            "Try again in a few minutes."
        )

    def _attempt_timeout(self, remaining: float) -> dict[str, float | None]:
        # Each wait is bounded by its own timeout and by what is left of the call's deadline.
        t = self._timeout
        return httpx.Timeout(
            connect=min(t.connect or remaining, remaining),
            read=min(t.read or remaining, remaining),
            write=min(t.write or remaining, remaining),
            pool=min(t.pool or remaining, remaining),
        ).as_dict()

    def _log(
        self, request: httpx.Request, outcome: object, attempt: int, started: float | None
    ) -> None:
        # Method, path and outcome only: never headers (the key) nor bodies (inputs, secrets).
        elapsed = f" in {self._clock() - started:.2f} s" if started is not None else ""
        logger.info(
            "Runflow %s %s → %s (attempt %d)%s",
            request.method,
            request.url.path,
            outcome,
            attempt,
            elapsed,
        )


# ---- helpers: validation of what we send, parsing of what we get ----


def _items_or_list(value: Any) -> Any:
    # The callback history is a bare JSON array; tolerate the list envelope as well.
    if isinstance(value, Mapping) and isinstance(value.get("items"), list):
        return value["items"]
    return value


_DELIVERIES = TypeAdapter(Annotated[list[CallbackDeliveryInfo], BeforeValidator(_items_or_list)])


def _json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"Runflow sent an answer the site cannot read ({response.status_code}, "
            f"{response.headers.get('content-type') or 'no content type'}, not JSON). Check "
            "that the API URL on the connection page points at Runflow's API.",
            status=response.status_code,
        ) from None


def _parse[M](model: type[M] | TypeAdapter[M], data: Any, what: str) -> M:
    try:
        adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
        return adapter.validate_python(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)[:3]
        )
        raise ProtocolError(
            f"Runflow's answer to {what} has an unexpected shape ({problems}). The site may "
            "need an update for a change at Runflow."
        ) from error


def _catalog_entry(data: dict[str, Any]) -> ModelInfo | None:
    try:
        return ModelInfo.model_validate(data)
    except ValidationError as error:
        logger.warning(
            "Skipped a model Runflow listed (%s): %s",
            str(data.get("id") or data.get("slug"))[:100],
            error.errors(include_url=False, include_input=False)[0]["msg"],
        )
        return None


def _describe(exc: httpx.HTTPError) -> str:
    names: dict[type[httpx.HTTPError], str] = {
        httpx.ConnectTimeout: "connect timeout",
        httpx.ReadTimeout: "read timeout",
        httpx.WriteTimeout: "write timeout",
        httpx.PoolTimeout: "no free connection",
        httpx.ConnectError: "connection refused or no route",
        httpx.RemoteProtocolError: "connection closed mid-answer",
    }
    return names.get(type(exc), type(exc).__name__)
