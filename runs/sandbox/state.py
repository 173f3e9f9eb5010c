"""The sandbox's in-memory state and its ledger, behind one lock.

Everything is bounded: the number of runs kept (the oldest finished ones go first, with
their files), the bytes of files on disk, and each ledger list. Callback secrets may be
kept in a JSON file so a restarted sandbox keeps signing with the secret the site holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from runs.sandbox.config import Config
from runs.sandbox.util import iso_z, now

TERMINAL = ("succeeded", "failed", "canceled", "partial_succeeded")
IN_FLIGHT = ("queued", "dispatching", "running")
STARTING_BALANCE = Decimal("100.00")
MAX_ORGS = 10_000
_ORG_NAMESPACE = uuid.UUID("0b1c9a52-7f63-4c43-8a53-8f1d2b6c7e90")


@dataclass
class Secret:
    id: str
    org_id: str
    label: str
    plain: str
    is_current: bool
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass
class Org:
    id: str
    name: str
    suffix: str
    is_admin: bool
    no_credit: bool
    balance: Decimal = STARTING_BALANCE
    secrets: list[Secret] = field(default_factory=list)

    def current_secret(self) -> Secret | None:
        return next((s for s in self.secrets if s.is_current and s.disabled_at is None), None)


@dataclass
class OutputFile:
    key: str
    org_id: str
    run_id: str
    path: Path
    content_type: str
    size: int
    expires_at: float


@dataclass
class Run:
    id: str
    seq: int
    org_id: str
    model_id: str
    input: dict[str, Any]
    metadata: dict[str, Any] | None
    client_ref: str | None
    callback_url: str | None
    idempotency_key: str | None
    scenario: frozenset[str]
    created_at: datetime
    batch_id: str | None = None
    sequence_index: int | None = None
    status: str = "queued"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: dict[str, Any] | None = None
    cost: Decimal | None = None
    failure_code: str | None = None
    failure_stage_code: str | None = None
    failure_message: str | None = None
    nodes_total: int = 1
    nodes_completed: int = 0
    ticks: int = 0
    logs: list[dict[str, Any]] = field(default_factory=list)
    node_runs: list[dict[str, Any]] = field(default_factory=list)
    feedback_is_positive: bool | None = None
    feedback_reason: str | None = None
    deliveries: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # Set by the "early" fault: the create handler sends the callback itself.
    early_callback: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def duration_ms(self) -> int | None:
        if self.completed_at is None:
            return None
        return int((self.completed_at - self.created_at).total_seconds() * 1000)


@dataclass
class Batch:
    id: str
    seq: int
    org_id: str
    model_id: str
    run_ids: list[str]
    metadata: dict[str, Any] | None
    callback_url: str | None
    idempotency_key: str | None
    created_at: datetime
    status: str = "queued"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deliveries: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def duration_ms(self) -> int | None:
        if self.completed_at is None:
            return None
        return int((self.completed_at - self.created_at).total_seconds() * 1000)


@dataclass
class Attempt:
    attempt_number: int
    copy: int
    status_code: int | None
    response_time_ms: int
    error_message: str | None
    response_body: str
    signed: bool
    created_at: datetime
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Delivery:
    id: str
    org_id: str
    subject: str  # "run" or "batch"
    subject_id: str
    callback_url: str
    payload: dict[str, Any]
    payload_bytes: bytes
    request_id: str
    is_automatic: bool
    max_attempts: int
    created_at: datetime
    status: str = "pending"  # pending, delivering, succeeded, failed, refused, dropped
    failure_reason_code: str | None = None
    failure_detail: str | None = None
    next_attempt_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    signing_secret_id: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    attempt_count: int = 0


@dataclass
class Asset:
    id: str
    org_id: str
    filename: str
    mime_type: str
    size_bytes: int
    path: Path
    created_at: datetime
    upload_expires: float
    uploaded: bool = False
    confirmed: bool = False


class Store:
    """All state, guarded by ``lock`` (an RLock: handlers hold it for short sections)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.orgs: dict[str, Org] = {}
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self.batches: OrderedDict[str, Batch] = OrderedDict()
        self.deliveries: dict[str, Delivery] = {}
        self.assets: OrderedDict[str, Asset] = OrderedDict()
        self.files: OrderedDict[str, OutputFile] = OrderedDict()
        self.idempotency: dict[tuple[str, str, str], tuple[bytes, int, bytes, str]] = {}
        self.seq = 0
        self.stored_bytes = 0
        self.root = Path(tempfile.mkdtemp(prefix="runflow-sandbox-"))
        self.ledger_runs: deque[dict[str, Any]] = deque(maxlen=config.max_ledger)
        self.ledger_requests: deque[dict[str, Any]] = deque(maxlen=config.max_ledger)
        self.ledger_callbacks: deque[dict[str, Any]] = deque(maxlen=config.max_ledger)
        self.ledger_events: deque[dict[str, Any]] = deque(maxlen=config.max_ledger)
        self._saved_secrets = self._load_secrets()

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def next_seq(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    # ---- organizations and keys ----

    def org_for_key(self, key: str) -> Org:
        org_id = str(uuid.uuid5(_ORG_NAMESPACE, key))
        with self.lock:
            org = self.orgs.get(org_id)
            if org is None:
                suffix = key[-4:]
                org = Org(
                    id=org_id,
                    name=f"Sandbox org {suffix}",
                    suffix=suffix,
                    is_admin=key.startswith("rf_svc_"),
                    no_credit="nocredit" in key.lower(),
                )
                if org.no_credit:
                    org.balance = Decimal("0.00")
                org.secrets = [
                    Secret(
                        **{
                            **item,
                            "created_at": _when(item["created_at"]),
                            "updated_at": _when(item["updated_at"]),
                            "disabled_at": None,
                            "last_used_at": None,
                        }
                    )
                    for item in self._saved_secrets.get(org_id, [])
                ]
                self.orgs[org_id] = org
                if len(self.orgs) > MAX_ORGS:
                    # Forget the oldest organization that holds no secret; its runs stay
                    # reachable, since the same key derives the same organization id.
                    oldest = next((o for o in self.orgs.values() if not o.secrets), None)
                    if oldest is not None and oldest is not org:
                        del self.orgs[oldest.id]
            return org

    def charge(self, org: Org, amount: Decimal) -> None:
        with self.lock:
            if org.balance < amount:
                # A sandbox never strands a demo: it tops itself up, and says so in the ledger.
                org.balance += STARTING_BALANCE
                self.event("balance_topped_up", org_id=org.id, amount=str(STARTING_BALANCE))
            org.balance -= amount

    # ---- callback secrets survive restarts when a file is configured ----

    def _load_secrets(self) -> dict[str, list[dict[str, Any]]]:
        path = self.config.secrets_file
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_secrets(self) -> None:
        path = self.config.secrets_file
        if path is None:
            return
        with self.lock:
            data = {
                org.id: [
                    {
                        "id": s.id,
                        "org_id": s.org_id,
                        "label": s.label,
                        "plain": s.plain,
                        "is_current": s.is_current,
                        "created_at": iso_z(s.created_at),
                        "updated_at": iso_z(s.updated_at),
                    }
                    for s in org.secrets
                ]
                for org in self.orgs.values()
                if org.secrets
            }
            self._saved_secrets.update(data)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
                json.dump(self._saved_secrets, out)
            temporary.replace(path)

    # ---- runs, bounded ----

    def add_run(self, run: Run) -> None:
        with self.lock:
            self.runs[run.id] = run
            self.ledger_runs.append(
                {
                    "run_id": run.id,
                    "org_id": run.org_id,
                    "model_id": run.model_id,
                    "client_ref": run.client_ref,
                    "idempotency_key": run.idempotency_key,
                    "batch_id": run.batch_id,
                    "scenario": sorted(run.scenario),
                    "created_at": iso_z(run.created_at),
                }
            )
            self._evict()

    def _evict(self) -> None:
        while len(self.runs) > self.config.max_runs:
            victim = next((r for r in self.runs.values() if r.terminal), None)
            if victim is None:
                return
            self.drop_run(victim)

    def add_batch(self, batch: Batch) -> None:
        with self.lock:
            self.batches[batch.id] = batch
            while len(self.batches) > max(10, self.config.max_runs // 10):
                _, old = self.batches.popitem(last=False)
                for delivery_id in old.deliveries:
                    self.deliveries.pop(delivery_id, None)
                self.idempotency = {k: v for k, v in self.idempotency.items() if v[3] != old.id}

    def drop_run(self, run: Run) -> None:
        self.runs.pop(run.id, None)
        for key in run.files:
            self.drop_file(key)
        for delivery_id in run.deliveries:
            self.deliveries.pop(delivery_id, None)
        self.idempotency = {k: v for k, v in self.idempotency.items() if v[3] != run.id}

    # ---- files on disk, bounded ----

    def add_file(self, run: Run, data: bytes, content_type: str, extension: str) -> OutputFile:
        key = f"{run.id}-{len(run.files)}-{uuid.uuid4().hex[:8]}.{extension}"
        path = self.root / key
        path.write_bytes(data)
        entry = OutputFile(
            key,
            run.org_id,
            run.id,
            path,
            content_type,
            len(data),
            expires_at=now().timestamp() + self.config.output_ttl,
        )
        with self.lock:
            self.files[key] = entry
            run.files.append(key)
            self.stored_bytes += len(data)
            while self.stored_bytes > self.config.max_storage_bytes and len(self.files) > 1:
                oldest = next(iter(self.files))
                self.drop_file(oldest)
        return entry

    def drop_file(self, key: str) -> None:
        entry = self.files.pop(key, None)
        if entry is not None:
            self.stored_bytes -= entry.size
            with contextlib.suppress(OSError):
                entry.path.unlink()

    def add_asset(self, asset: Asset) -> None:
        with self.lock:
            self.assets[asset.id] = asset
            while len(self.assets) > 1000:
                _, old = self.assets.popitem(last=False)
                with contextlib.suppress(OSError):
                    old.path.unlink()

    # ---- the ledger ----

    def request(self, entry: dict[str, Any]) -> None:
        self.ledger_requests.append(entry)

    def callback_attempt(self, entry: dict[str, Any]) -> None:
        self.ledger_callbacks.append(entry)

    def event(self, kind: str, **fields: Any) -> None:
        self.ledger_events.append({"event": kind, "at": iso_z(now()), **fields})

    def ledger(self, org_id: str | None = None) -> dict[str, Any]:
        def mine(entries: deque[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in list(entries) if org_id is None or e.get("org_id") == org_id]

        return {
            "runs": mine(self.ledger_runs),
            "requests": mine(self.ledger_requests),
            "callbacks": mine(self.ledger_callbacks),
            "events": mine(self.ledger_events),
        }


def body_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)
