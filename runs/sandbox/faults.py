"""Fault switches, set at runtime with ``POST /_sandbox/faults`` and read with GET.

Every switch that can misbehave "sometimes" takes a trigger: ``true`` (always),
``{"rate": 0.3}`` (at random) or ``{"next": 2}`` (exactly the next two times, then off),
the last one so tests are deterministic instead of flaky. A POST merges into the current
switches (``null`` removes one); ``POST /_sandbox/reset`` clears them all.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

ERROR_STATUSES = (429, 500, 502, 503, 504)
ROUTE_SCOPES = ("create", "read", "all")
MAX_HANG = 120.0
MAX_COPIES = 16


class FaultError(ValueError):
    """A fault description that does not make sense (answered with 400)."""


@dataclass
class Trigger:
    rate: float = 0.0
    remaining: int | None = None

    @classmethod
    def parse(cls, value: Any, name: str) -> Trigger | None:
        if value is None or value is False:
            return None
        if value is True:
            return cls(rate=1.0)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(rate=_rate(value, name))
        if isinstance(value, dict):
            if "next" in value:
                count = value["next"]
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise FaultError(f"{name}.next must be a whole number ≥ 0")
                return cls(remaining=count)
            return cls(rate=_rate(value.get("rate", 1.0), name))
        raise FaultError(f"{name} must be true, a rate, {{'rate': x}} or {{'next': n}}")

    def fire(self) -> bool:
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True
        return self.rate >= 1.0 or random.random() < self.rate

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def to_json(self) -> dict[str, Any]:
        return {"next": self.remaining} if self.remaining is not None else {"rate": self.rate}


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise FaultError(f"{name}.rate must be a number between 0 and 1")
    return float(value)


def _scope(value: Any, name: str) -> str:
    scope = value if value is not None else "create"
    if scope not in ROUTE_SCOPES:
        raise FaultError(f"{name}.routes must be one of {', '.join(ROUTE_SCOPES)}")
    return str(scope)


@dataclass
class ErrorFault:
    status: int
    trigger: Trigger
    retry_after: int | None = None
    after_create: bool = False
    routes: str = "create"

    @classmethod
    def parse(cls, value: Any) -> ErrorFault | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise FaultError("create_error must be an object with a status")
        status = value.get("status")
        if status not in ERROR_STATUSES:
            raise FaultError(f"create_error.status must be one of {ERROR_STATUSES}")
        retry_after = value.get("retry_after")
        if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
            raise FaultError("create_error.retry_after must be whole seconds ≥ 0")
        trigger = Trigger.parse(
            {k: v for k, v in value.items() if k in ("rate", "next")} or True, "create_error"
        )
        assert trigger is not None
        return cls(
            status,
            trigger,
            retry_after,
            bool(value.get("after_create")),
            _scope(value.get("routes"), "create_error"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            **self.trigger.to_json(),
            "retry_after": self.retry_after,
            "after_create": self.after_create,
            "routes": self.routes,
        }


@dataclass
class HangFault:
    seconds: float
    trigger: Trigger
    routes: str = "create"

    @classmethod
    def parse(cls, value: Any) -> HangFault | None:
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = {"seconds": value}
        if not isinstance(value, dict):
            raise FaultError("hang must be seconds or an object with seconds")
        seconds = value.get("seconds")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_HANG
        ):
            raise FaultError(f"hang.seconds must be between 0 and {MAX_HANG:g}")
        trigger = Trigger.parse(
            {k: v for k, v in value.items() if k in ("rate", "next")} or True, "hang"
        )
        assert trigger is not None
        return cls(float(seconds), trigger, _scope(value.get("routes"), "hang"))

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, **self.trigger.to_json(), "routes": self.routes}


@dataclass
class DeliveryPlan:
    """What happens to one callback delivery."""

    copies: int = 1
    drop: bool = False
    bad_signature: bool = False


class Faults:
    """The current switches; every read that consumes a ``next`` counter is atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.create_error: ErrorFault | None = None
            self.hang_fault: HangFault | None = None
            self.duplicate = 1
            self.out_of_order: dict[str, float] | None = None
            self.drop: Trigger | None = None
            self.bad_signature: Trigger | None = None
            self.early: Trigger | None = None
            self.legacy_output: Trigger | None = None
            self.extra_fields = False
            # Output links expire this soon instead of SANDBOX_OUTPUT_TTL (None: the default).
            self.output_ttl: float | None = None

    def update(self, data: Any) -> None:
        """Merge ``data`` (the POST body) into the switches; all or nothing."""
        if not isinstance(data, dict):
            raise FaultError("send a JSON object")
        unknown = set(data) - {
            "create_error",
            "hang",
            "callbacks",
            "legacy_output",
            "extra_fields",
            "output_ttl",
        }
        if unknown:
            raise FaultError(f"unknown fault switches: {', '.join(sorted(unknown))}")
        callbacks = data.get("callbacks") or {}
        if not isinstance(callbacks, dict):
            raise FaultError("callbacks must be an object")
        unknown = set(callbacks) - {"duplicate", "out_of_order", "drop", "bad_signature", "early"}
        if unknown:
            raise FaultError(f"unknown callback faults: {', '.join(sorted(unknown))}")
        parsed: dict[str, Any] = {}
        if "create_error" in data:
            parsed["create_error"] = ErrorFault.parse(data["create_error"])
        if "hang" in data:
            parsed["hang_fault"] = HangFault.parse(data["hang"])
        if "legacy_output" in data:
            parsed["legacy_output"] = Trigger.parse(data["legacy_output"], "legacy_output")
        if "extra_fields" in data:
            parsed["extra_fields"] = bool(data["extra_fields"])
        if "output_ttl" in data:
            ttl = data["output_ttl"]
            if ttl is not None and (
                isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 86400
            ):
                raise FaultError("output_ttl must be seconds between 0 and 86400, or null")
            parsed["output_ttl"] = None if ttl is None else float(ttl)
        if "duplicate" in callbacks:
            copies = callbacks["duplicate"] or 1
            if (
                not isinstance(copies, int)
                or isinstance(copies, bool)
                or not 1 <= copies <= MAX_COPIES
            ):
                raise FaultError(
                    f"callbacks.duplicate must be a number of copies, 1 to {MAX_COPIES}"
                )
            parsed["duplicate"] = copies
        if "out_of_order" in callbacks:
            parsed["out_of_order"] = _out_of_order(callbacks["out_of_order"])
        for name in ("drop", "bad_signature", "early"):
            if name in callbacks:
                parsed[name] = Trigger.parse(callbacks[name], f"callbacks.{name}")
        with self._lock:
            for name, value in parsed.items():
                setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "create_error": self.create_error.to_json() if self.create_error else None,
                "hang": self.hang_fault.to_json() if self.hang_fault else None,
                "callbacks": {
                    "duplicate": self.duplicate,
                    "out_of_order": self.out_of_order,
                    "drop": self.drop.to_json() if self.drop else None,
                    "bad_signature": self.bad_signature.to_json() if self.bad_signature else None,
                    "early": self.early.to_json() if self.early else None,
                },
                "legacy_output": self.legacy_output.to_json() if self.legacy_output else None,
                "extra_fields": self.extra_fields,
                "output_ttl": self.output_ttl,
            }

    # ---- consumed by the server, the lifecycle and the callback sender ----

    def error_for(self, scope: str) -> ErrorFault | None:
        with self._lock:
            fault = self.create_error
            if fault is None or not _applies(fault.routes, scope) or not fault.trigger.fire():
                return None
            return fault

    def hang_for(self, scope: str) -> float:
        with self._lock:
            fault = self.hang_fault
            if fault is None or not _applies(fault.routes, scope) or not fault.trigger.fire():
                return 0.0
            return fault.seconds

    def delivery_plan(self) -> DeliveryPlan:
        with self._lock:
            return DeliveryPlan(
                copies=self.duplicate,
                drop=bool(self.drop and self.drop.fire()),
                bad_signature=bool(self.bad_signature and self.bad_signature.fire()),
            )

    def reorder_window(self) -> dict[str, float] | None:
        with self._lock:
            return dict(self.out_of_order) if self.out_of_order else None

    def send_early(self) -> bool:
        with self._lock:
            return bool(self.early and self.early.fire())

    def use_legacy_output(self) -> bool:
        with self._lock:
            return bool(self.legacy_output and self.legacy_output.fire())


def _applies(routes: str, scope: str) -> bool:
    return routes == "all" or routes == scope


def _out_of_order(value: Any) -> dict[str, float] | None:
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise FaultError("callbacks.out_of_order must be true or {'window': n, 'hold_seconds': s}")
    window = value.get("window", 2)
    hold = value.get("hold_seconds", 3.0)
    if not isinstance(window, int) or isinstance(window, bool) or not 2 <= window <= 50:
        raise FaultError("callbacks.out_of_order.window must be 2 to 50")
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 < hold <= 60:
        raise FaultError("callbacks.out_of_order.hold_seconds must be between 0 and 60")
    return {"window": window, "hold_seconds": float(hold)}
