"""Signed callback deliveries, with retries and the callback fault switches.

The body is serialized once when the delivery is created and those exact bytes are sent on
every attempt (a redelivery builds a new delivery from the run's current state). The
``Runflow-Signature`` header is the lowercase hex HMAC-SHA256 of the body, keyed with the
UTF-8 bytes of the organization's current ``whsec_`` secret, and is absent when the
organization has none. Non-2xx answers, timeouts and connection errors are retried with
exponential backoff; every attempt is recorded on the delivery and in the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from runs.sandbox.config import Config
from runs.sandbox.faults import DeliveryPlan, Faults
from runs.sandbox.scheduler import Scheduler
from runs.sandbox.state import Attempt, Delivery, Org, Store
from runs.sandbox.util import dumps, iso_z, now

MAX_RESPONSE_KEPT = 500
MAX_URL = 2048


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def destination_allowed(url: str, bases: list[str]) -> bool:
    """Only the configured site may receive callbacks (loopback only when none is set)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        return False
    if not bases:
        host = parts.hostname
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    for base in bases:
        allowed = urlsplit(base)
        if (
            allowed.scheme == parts.scheme
            and allowed.hostname == parts.hostname
            and (allowed.port or _default_port(allowed.scheme))
            == (port or _default_port(parts.scheme))
            and parts.path.startswith(
                allowed.path.rstrip("/") + "/" if allowed.path.strip("/") else "/"
            )
        ):
            return True
    return False


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class Sender:
    def __init__(self, store: Store, config: Config, faults: Faults, scheduler: Scheduler) -> None:
        self.store = store
        self.config = config
        self.faults = faults
        self.scheduler = scheduler
        self.pool = ThreadPoolExecutor(
            config.callback_workers, thread_name_prefix="sandbox-callback"
        )
        # Held callbacks, per organization: one organization's callbacks are reordered among
        # themselves, so a late callback of another organization never fills (or empties)
        # its window.
        self._held: dict[str, list[Delivery]] = {}
        # Which group of held callbacks a release is for: the hold timer of a group that
        # already went out when its window filled must not release the next group early.
        self._held_group: dict[str, int] = {}
        self._held_lock = threading.Lock()
        self._plans: dict[str, DeliveryPlan] = {}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def deliver(
        self,
        org: Org,
        subject: str,
        subject_id: str,
        url: str,
        payload: dict[str, Any],
        *,
        automatic: bool = True,
        early: bool = False,
    ) -> Delivery:
        """Create a delivery (body frozen now) and send it according to the faults."""
        delivery = Delivery(
            id=str(uuid.uuid4()),
            org_id=org.id,
            subject=subject,
            subject_id=subject_id,
            callback_url=url,
            payload=payload,
            payload_bytes=dumps(payload),
            request_id=f"req_{uuid.uuid4().hex}",
            is_automatic=automatic,
            max_attempts=self.config.callback_attempts,
            created_at=now(),
        )
        with self.store.lock:
            self.store.deliveries[delivery.id] = delivery
            owner = (self.store.runs if subject == "run" else self.store.batches).get(subject_id)
            if owner is not None:
                owner.deliveries.append(delivery.id)
        if not destination_allowed(url, self.config.callback_bases):
            self._close(
                delivery,
                "refused",
                "DESTINATION_NOT_ALLOWED",
                "The sandbox only calls back the configured site (see --callback-base).",
            )
            self._record(delivery, None, status=None, error="refused: destination not allowed")
            return delivery
        plan = self.faults.delivery_plan()
        if plan.drop:
            self._close(delivery, "dropped", "DROPPED_BY_SANDBOX", "Dropped by the 'drop' fault.")
            self._record(delivery, None, status=None, error="dropped by fault")
            return delivery
        self._plans[delivery.id] = plan
        if early:
            self._attempt(delivery, 1)
            return delivery
        window = self.faults.reorder_window()
        if window:
            self._hold(delivery, window)
        else:
            self.pool.submit(self._attempt, delivery, 1)
        return delivery

    # ---- out of order: hold a few, then send them newest first ----

    def _hold(self, delivery: Delivery, window: dict[str, float]) -> None:
        org_id = delivery.org_id
        with self._held_lock:
            held = self._held.setdefault(org_id, [])
            held.append(delivery)
            full = len(held) >= window["window"]
            first = len(held) == 1
            group = self._held_group.get(org_id, 0)
        if full:
            self.pool.submit(self._release, org_id, group)
        elif first:
            self.scheduler.call_later(
                window["hold_seconds"], self.pool, self._release, org_id, group
            )

    def _release(self, org_id: str, group: int) -> None:
        with self._held_lock:
            if group != self._held_group.get(org_id, 0):
                return  # that group was already sent
            self._held_group[org_id] = group + 1
            held = self._held.pop(org_id, [])
        for delivery in reversed(held):
            self._attempt(delivery, 1)

    # ---- one attempt (plus concurrent copies when duplicating) ----

    def _attempt(self, delivery: Delivery, number: int) -> None:
        plan = self._plans.get(delivery.id, DeliveryPlan())
        copies = plan.copies if number == 1 else 1
        with self.store.lock:
            org = self.store.orgs.get(delivery.org_id)
            secret = org.current_secret() if org else None
            delivery.status = "delivering"
            delivery.attempt_count = number
            delivery.signing_secret_id = secret.id if secret else None
            if secret:
                secret.last_used_at = now()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Runflow-Sandbox/1.0",
            "Runflow-Request-Id": delivery.request_id,
        }
        if secret is not None:
            key = "whsec_not_the_right_secret" if plan.bad_signature else secret.plain
            headers["Runflow-Signature"] = sign(delivery.payload_bytes, key)
        results: list[tuple[int | None, str | None]] = [(None, None)] * copies
        if copies == 1:
            results[0] = self._post(delivery, number, 0, headers)
        else:
            # Duplicates arrive together: start every copy, then wait for all of them.
            gate = threading.Barrier(copies)

            def send(copy: int) -> None:
                with contextlib.suppress(threading.BrokenBarrierError):
                    gate.wait(timeout=5)
                results[copy] = self._post(delivery, number, copy, headers)

            threads = [threading.Thread(target=send, args=(c,), daemon=True) for c in range(copies)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(self.config.callback_timeout + 10)
        if any(status is not None and 200 <= status < 300 for status, _ in results):
            self._plans.pop(delivery.id, None)
            self._close(delivery, "succeeded", None, None)
            return
        status, error = results[0]
        detail = error or f"The endpoint answered HTTP {status}."
        if number >= delivery.max_attempts:
            self._plans.pop(delivery.id, None)
            self._close(delivery, "failed", "MAX_ATTEMPTS_EXCEEDED", detail)
            return
        delay = self.config.callback_backoff * (2 ** (number - 1))
        with self.store.lock:
            delivery.status = "pending"
            delivery.failure_detail = detail
            delivery.next_attempt_at = now() + timedelta(seconds=delay)
            delivery.updated_at = now()
        self.scheduler.call_later(delay, self.pool, self._attempt, delivery, number + 1)

    def _post(
        self, delivery: Delivery, number: int, copy: int, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        parts = urlsplit(delivery.callback_url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        body = ""
        try:
            connection = connection_class(
                parts.hostname or "", parts.port, timeout=self.config.callback_timeout
            )
            try:
                connection.request("POST", path, body=delivery.payload_bytes, headers=headers)
                response = connection.getresponse()
                status = response.status
                body = response.read(MAX_RESPONSE_KEPT).decode(errors="replace")
            finally:
                connection.close()
        except TimeoutError:
            error = f"Timed out after {self.config.callback_timeout:g} s."
        except (OSError, http.client.HTTPException) as exc:
            error = f"Could not deliver: {type(exc).__name__}: {exc}"[:300]
        elapsed = int((time.monotonic() - started) * 1000)
        attempt = Attempt(
            number, copy, status, elapsed, error, body, "Runflow-Signature" in headers, now()
        )
        with self.store.lock:
            delivery.attempts.append(attempt)
            del delivery.attempts[:-200]
        self._record(delivery, attempt, status=status, error=error)
        return status, error

    def _record(
        self, delivery: Delivery, attempt: Attempt | None, *, status: int | None, error: str | None
    ) -> None:
        self.store.callback_attempt(
            {
                "delivery_id": delivery.id,
                "org_id": delivery.org_id,
                f"{delivery.subject}_id": delivery.subject_id,
                "event": delivery.payload.get("event"),
                "url": delivery.callback_url,
                "request_id": delivery.request_id,
                "is_automatic": delivery.is_automatic,
                "attempt_number": attempt.attempt_number if attempt else 0,
                "copy": attempt.copy if attempt else 0,
                "status_code": status,
                "error": error,
                "signed": attempt.signed if attempt else False,
                "bad_signature": bool(self._plans.get(delivery.id, DeliveryPlan()).bad_signature),
                "response_time_ms": attempt.response_time_ms if attempt else 0,
                "outcome": delivery.status,
                "at": iso_z(now()),
            }
        )

    def _close(
        self, delivery: Delivery, status: str, reason: str | None, detail: str | None
    ) -> None:
        with self.store.lock:
            delivery.status = status
            delivery.failure_reason_code = reason
            delivery.failure_detail = detail
            delivery.next_attempt_at = None
            delivery.completed_at = delivery.updated_at = now()
