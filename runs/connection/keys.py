"""A team's Runflow API keys: checked when pasted, stored encrypted, handed out decrypted.

Plain keys exist only inside the functions of this module (marked with
``sensitive_variables`` so an error report never shows them) and inside the
``RunflowClient`` they build; they are never logged, never put in an audit entry, never
rendered. Everything the pages show comes from ``RunflowKey.masked``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from runs.connection import breaker, endpoints
from runs.fields import DecryptionError, EncryptedSecret
from runs.models import CallbackSecret, RunflowKey, Team, record
from runs.runflow import (
    AuthenticationFailed,
    PermissionDenied,
    RunflowClient,
    RunflowError,
)

logger = logging.getLogger(__name__)

# Scopes a key needs for members to launch and follow runs (RUNFLOW_API.md, "Basics").
LAUNCH_SCOPES = ("runs:create", "runs:read")
# A check made while an admin waits: fail in seconds, not after five patient retries.
CHECK_ATTEMPTS = 2
CHECK_DEADLINE = 20.0
# How often "last used" is written: a worker polling every few seconds needs no write each time.
LAST_USED_PRECISION = timedelta(minutes=1)
BALANCE_CACHE_SECONDS = 7 * 24 * 3600


class ConnectionUnavailable(Exception):
    """The team cannot call Runflow now; ``message`` says why and what to do."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # "no_key", "unreadable", "endpoint", "breaker", "revoked"

    def __str__(self) -> str:
        return self.message


class KeyRefused(Exception):
    """A key (or endpoint) the connection page cannot accept; ``field`` is the form field."""

    def __init__(self, message: str, *, field: str = "api_key") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class KeyCheck:
    """What GET /v1/auth/me and GET /v1/billing/balance said about a key."""

    org_id: str = ""
    org_name: str = ""
    scopes: list[str] = field(default_factory=list)
    balance: Decimal | None = None
    low_balance_threshold: Decimal | None = None
    currency: str = "USD"
    warnings: list[str] = field(default_factory=list)

    @property
    def missing_scopes(self) -> list[str]:
        return missing_scopes(self.scopes)


def missing_scopes(scopes: list[str]) -> list[str]:
    """Launch scopes the key lacks; none when Runflow did not list scopes at all."""
    if not scopes or "*" in scopes:
        return []
    have = set(scopes)
    return [s for s in LAUNCH_SCOPES if s not in have and f"{s.split(':')[0]}:*" not in have]


@sensitive_variables()
def decrypt(obj: RunflowKey | CallbackSecret) -> str:
    """The plain value of a stored key or secret; ``DecryptionError`` if no key opens it."""
    return cast(EncryptedSecret, obj.secret).reveal()


def open_client(api_url: str, plain: str, **options: Any) -> RunflowClient:
    """The one place this package builds a client (tests swap ``RunflowClient`` here)."""
    return RunflowClient(api_url, plain, **options)


@sensitive_variables()
def check_key(api_url: str, plain: str) -> KeyCheck:
    """Ask Runflow who this key is; raise ``KeyRefused`` with a precise reason if it fails."""
    where = endpoints.label_for(api_url)
    try:
        with open_client(
            api_url, plain, max_attempts=CHECK_ATTEMPTS, deadline=CHECK_DEADLINE
        ) as client:
            me = client.me()
            result = _from_me(me)
            _add_balance(client, result)
    except AuthenticationFailed as error:
        if error.status is None:  # refused locally: not even shaped like a key
            raise KeyRefused(
                "This does not look like a Runflow API key (they start with rf_live_ or "
                "rf_svc_ and contain only letters, digits, _ . and -)."
            ) from None
        raise KeyRefused(
            f"Runflow at {where} refused this key (401): it is mistyped, revoked, or made for "
            "another endpoint."
        ) from None
    except PermissionDenied as error:
        raise KeyRefused(
            f"The key is genuine but may not read its own account (403, {error.code or 'no code'})"
            ". Give it more scopes in Runflow's dashboard, or use another key."
        ) from None
    except RunflowError as error:
        raise KeyRefused(
            f"The key could not be checked at {where}: {error.message}", field="api_url"
        ) from None
    if result.missing_scopes:
        result.warnings.append(
            f"The key lacks {', '.join(result.missing_scopes)}: members will not be able to "
            "launch or follow runs with it."
        )
    return result


def _from_me(me: Any) -> KeyCheck:
    membership = next((m for m in me.memberships if m.org is not None), None)
    if membership is None:
        return KeyCheck(org_name=me.organization_name or "")
    org = membership.org
    return KeyCheck(
        org_id=str(org.id or ""),
        org_name=str(org.name or ""),
        scopes=[str(scope) for scope in membership.scopes],
    )


def _add_balance(client: RunflowClient, result: KeyCheck) -> None:
    # The balance is a courtesy: a key without the billing scope is still a working key.
    try:
        balance = client.balance()
    except PermissionDenied:
        result.warnings.append(
            "The key may not read the balance (403): add the credit_balance:read scope to see "
            "it here."
        )
        return
    except RunflowError as error:
        result.warnings.append(f"The balance could not be read: {error.message}")
        return
    result.balance = balance.balance
    result.low_balance_threshold = balance.low_balance_threshold
    result.currency = balance.currency or "USD"


# ---- the balance, remembered between checks (shared by every process through the cache) ----


def _balance_cache_key(key: RunflowKey) -> str:
    return f"runflow-connection:balance:{key.uuid}"


def remember_check(key: RunflowKey, result: KeyCheck) -> None:
    cache.set(
        _balance_cache_key(key),
        {
            "balance": None if result.balance is None else str(result.balance),
            "low": None
            if result.low_balance_threshold is None
            else str(result.low_balance_threshold),
            "currency": result.currency,
            "checked_at": timezone.now().isoformat(),
        },
        BALANCE_CACHE_SECONDS,
    )


def remembered_balance(key: RunflowKey) -> dict[str, Any] | None:
    """The balance seen at the last check of ``key`` (or None): a dict for templates."""
    data = cache.get(_balance_cache_key(key))
    if not data or data.get("balance") is None:
        return None
    balance = Decimal(data["balance"])
    low = Decimal(data["low"]) if data.get("low") is not None else None
    return {
        "balance": balance,
        "currency": data.get("currency") or "USD",
        "low": low,
        "is_low": low is not None and balance <= low,
        "checked_at": data.get("checked_at"),
    }


# ---- connecting, re-entering, re-checking, revoking ----


@sensitive_variables()
def find_duplicate(team: Team, plain: str) -> RunflowKey | None:
    """An active key of the team with the same value (ciphertexts differ, so decrypt)."""
    for key in team.runflow_keys.filter(revoked_at__isnull=True, needs_reentry=False):
        try:
            if decrypt(key) == plain:
                return key
        except DecryptionError:
            continue
    return None


@sensitive_variables()
def connect_key(
    team: Team,
    *,
    label: str,
    api_url: str,
    plain: str,
    actor: Any = None,
    make_default: bool = False,
    check: bool = True,
) -> tuple[RunflowKey, KeyCheck]:
    """Check a pasted key with Runflow, then store it encrypted (no network in the transaction)."""
    api_url = endpoints.normalize(api_url)
    if not endpoints.is_allowed(api_url):
        raise KeyRefused("Choose one of the endpoints offered on this page.", field="api_url")
    label = label.strip()
    if team.runflow_keys.filter(revoked_at__isnull=True, label=label).exists():
        raise KeyRefused(f"A key labelled “{label}” is already connected.", field="label")
    duplicate = find_duplicate(team, plain)
    if duplicate is not None:
        raise KeyRefused(f"This key is already connected as “{duplicate.label}”.")
    result = check_key(api_url, plain) if check else KeyCheck()
    now = timezone.now()
    with transaction.atomic():
        has_default = team.runflow_keys.filter(revoked_at__isnull=True, is_default=True).exists()
        key = RunflowKey(
            team=team,
            label=label,
            api_url=api_url,
            org_id=result.org_id[:100],
            org_name=result.org_name[:200],
            scopes=result.scopes,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            last_checked_at=now if check else None,
            is_default=make_default or not has_default,
        )
        key.set_secret(plain)
        if key.is_default:
            team.runflow_keys.filter(is_default=True).update(is_default=False)
        key.save()
        record(
            "connection.key_connected",
            team=team,
            actor=actor,
            target=key.label,
            key=key.masked,
            endpoint=api_url,
            org=key.org_name,
            default=key.is_default,
        )
    if check:
        remember_check(key, result)
        if key.is_default:
            breaker.record_upstream_success(team)
    return key, result


@sensitive_variables()
def reenter_key(key: RunflowKey, plain: str, *, actor: Any = None) -> KeyCheck:
    """Replace a key's value (after a lost encryption key, or a rotation at Runflow)."""
    _refuse_unoffered(key)
    result = check_key(key.api_url, plain)
    if key.org_id and result.org_id and key.org_id != result.org_id:
        raise KeyRefused(
            f"This key belongs to another Runflow organization ({result.org_name or result.org_id}"
            f") than “{key.label}” ({key.org_name or key.org_id}): add it as a new key instead."
        )
    key.set_secret(plain)
    key.org_id, key.org_name = result.org_id[:100] or key.org_id, result.org_name[:200]
    key.scopes = result.scopes
    key.last_checked_at = timezone.now()
    key.save()
    record(
        "connection.key_reentered",
        team=key.team,
        actor=actor,
        target=key.label,
        key=key.masked,
    )
    remember_check(key, result)
    if key.is_default:
        breaker.record_upstream_success(key.team)
    return result


@sensitive_variables()
def recheck_key(key: RunflowKey) -> KeyCheck:
    """Ask Runflow again about a stored key: org, scopes, balance. An admin's "try now"."""
    _refuse_unoffered(key)
    plain = reveal_key(key)
    result = check_key(key.api_url, plain)
    key.org_id = result.org_id[:100] or key.org_id
    key.org_name = result.org_name[:200] or key.org_name
    key.scopes = result.scopes
    key.last_checked_at = timezone.now()
    key.save(update_fields=["org_id", "org_name", "scopes", "last_checked_at"])
    remember_check(key, result)
    if key.is_default:
        breaker.record_upstream_success(key.team)
    return result


def _refuse_unoffered(key: RunflowKey) -> None:
    # The endpoint was checked when the key was added; the site's settings may have changed.
    if not endpoints.is_allowed(key.api_url):
        raise KeyRefused(
            f"“{key.label}” points at {key.api_url}, which this site no longer offers: revoke it "
            "and add a key for one of the endpoints listed below.",
            field="api_url",
        )


def set_default_key(key: RunflowKey, *, actor: Any = None) -> None:
    if not key.is_active:
        raise KeyRefused("A revoked key cannot become the default.")
    if key.needs_reentry:
        raise KeyRefused(f"Enter “{key.label}” again before making it the default.")
    with transaction.atomic():
        previous = key.team.runflow_keys.filter(is_default=True).exclude(pk=key.pk).first()
        key.team.runflow_keys.exclude(pk=key.pk).update(is_default=False)
        RunflowKey.objects.filter(pk=key.pk).update(is_default=True)
        key.is_default = True
        record(
            "connection.default_changed",
            team=key.team,
            actor=actor,
            target=key.label,
            key=key.masked,
            previous=previous.label if previous else "",
        )


def revoke_key(key: RunflowKey, *, actor: Any = None) -> RunflowKey | None:
    """Stop using a key; the oldest remaining key becomes the default. Returns that one."""
    if not key.is_active:
        return None
    with transaction.atomic():
        was_default = key.is_default
        key.revoked_at = timezone.now()
        key.is_default = False
        key.save(update_fields=["revoked_at", "is_default"])
        successor = None
        if was_default:
            successor = (
                key.team.runflow_keys.filter(revoked_at__isnull=True)
                .order_by("needs_reentry", "created_at", "id")
                .first()
            )
            if successor is not None:
                RunflowKey.objects.filter(pk=successor.pk).update(is_default=True)
                successor.is_default = True
        record(
            "connection.key_revoked",
            team=key.team,
            actor=actor,
            target=key.label,
            key=key.masked,
            new_default=successor.label if successor else "",
        )
    cache.delete(_balance_cache_key(key))
    return successor


# ---- handing a key out: the only way the rest of the site gets one ----


def mark_unreadable(obj: RunflowKey | CallbackSecret) -> None:
    """Flag a secret no configured key decrypts (S2); audit it the first time only."""
    flipped = type(obj).objects.filter(pk=obj.pk, needs_reentry=False).update(needs_reentry=True)
    obj.needs_reentry = True
    if flipped:
        what = "key" if isinstance(obj, RunflowKey) else "secret"
        logger.error(
            "The %s %s of team %s cannot be decrypted with FIELD_ENCRYPTION_KEYS; "
            "it is marked for re-entry.",
            what,
            obj.masked,
            obj.team_id,
        )
        record(
            f"connection.{what}_unreadable",
            team=obj.team,
            target=getattr(obj, "label", obj.masked),
            masked=obj.masked,
        )


@sensitive_variables()
def reveal_key(key: RunflowKey) -> str:
    """The plain key, or ``ConnectionUnavailable`` (and the key marked) if it cannot be read."""
    if key.needs_reentry:
        raise _needs_reentry(key)
    try:
        return decrypt(key)
    except DecryptionError:
        mark_unreadable(key)
        raise _needs_reentry(key) from None


def _needs_reentry(key: RunflowKey) -> ConnectionUnavailable:
    return ConnectionUnavailable(
        f"The team's Runflow key “{key.label}” cannot be decrypted with this site's "
        "FIELD_ENCRYPTION_KEYS, so nothing was sent to Runflow. A team admin must enter the "
        "key again on the Runflow connection page (or the operator must restore the "
        "encryption key).",
        reason="unreadable",
    )


@sensitive_variables()
def client_for_team(team: Team, *, key: RunflowKey | None = None) -> RunflowClient:
    """A client for the team's default key (or ``key``), or ``ConnectionUnavailable``.

    Refuses, before any byte is sent, when the team has no usable key, the key cannot be
    decrypted (it is then marked ``needs_reentry``), its endpoint is no longer allowed, or
    the team's circuit breaker is open (R4). The caller closes the client (``with``).
    """
    if key is None:
        key = team.default_key()
        if key is None:
            raise ConnectionUnavailable(
                "This team is not connected to Runflow yet: a team admin adds an API key on "
                "the Runflow connection page.",
                reason="no_key",
            )
    elif key.team_id != team.pk:
        raise ValueError("This key belongs to another team.")
    if not key.is_active:
        raise ConnectionUnavailable(
            f"The Runflow key “{key.label}” was revoked: choose another key.", reason="revoked"
        )
    if not endpoints.is_allowed(key.api_url):
        raise ConnectionUnavailable(
            f"The key “{key.label}” points at {key.api_url}, which this site no longer offers. "
            "A team admin connects a key for another endpoint.",
            reason="endpoint",
        )
    plain = reveal_key(key)
    if not breaker.claim_probe(team):
        raise ConnectionUnavailable(breaker_message(team), reason="breaker")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
        RunflowKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return open_client(key.api_url, plain)


def breaker_message(team: Team) -> str:
    until = team.breaker_open_until
    when = timezone.localtime(until).strftime("%H:%M:%S") if until else "shortly"
    because = f" The last error: {team.breaker_reason}" if team.breaker_reason else ""
    return (
        f"Runflow calls for this team are paused until {when} after {team.breaker_failures} "
        f"failures in a row, so that a struggling Runflow is not flooded.{because}"
    )
