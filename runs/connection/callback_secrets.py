"""The team's callback signing secrets (W2, W3): created at Runflow or pasted, rotated, retired.

Runflow signs each callback with its organization's current secret. The site verifies with
every *active* secret of the team, so a rotation never drops a callback: create (or paste)
the new secret, and both verify until an admin retires the old one. At most two are active
at once, as at Runflow.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from runs.connection import breaker
from runs.connection.keys import (
    ConnectionUnavailable,
    client_for_team,
    decrypt,
    mark_unreadable,
)
from runs.fields import DecryptionError
from runs.models import CallbackSecret, Team, record
from runs.runflow import OutcomeUnknown, RunflowError

logger = logging.getLogger(__name__)

MAX_ACTIVE = 2
SECRET_RE = re.compile(r"whsec_[\x21-\x7e]{8,500}")
# "Callbacks received and verified recently" on the connection page.
RECENT = timedelta(days=1)
# The "last verified" times are written at most this often (see record_verified_callback).
STAMP_EVERY = timedelta(seconds=60)


class SecretRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def active_secrets(team: Team) -> list[CallbackSecret]:
    return list(team.active_secrets().order_by("-created_at", "-id"))


@sensitive_variables()
def active_secrets_with_values(team: Team) -> list[tuple[CallbackSecret, str]]:
    """The team's active secrets with their plain values, newest first.

    A secret that cannot be decrypted is marked ``needs_reentry`` and left out: it can never
    verify anything, and the callback view must not fail because of it.
    """
    found = []
    for secret in active_secrets(team):
        if secret.needs_reentry:
            continue
        try:
            found.append((secret, decrypt(secret)))
        except DecryptionError:
            mark_unreadable(secret)
    return found


@sensitive_variables()
def active_secret_values(team: Team) -> list[str]:
    """The plain values that may verify this team's callbacks (two during a rotation)."""
    return [value for _, value in active_secrets_with_values(team)]


def record_verified_callback(team: Team, secret: CallbackSecret | None = None) -> None:
    """For the callback view: a callback of this team was verified (with ``secret``).

    The times are stamped at most once a ``STAMP_EVERY`` (the page shows them to the
    minute): two writes per callback were most of the write-lock waits under load. The view
    loaded both rows just now, so a fresh stamp costs no query at all; a stale one is
    written by a conditional UPDATE, so concurrent callbacks stamp it once, not each.
    """
    now = timezone.now()
    if _team_stamp_due(team, now):
        Team.objects.filter(pk=team.pk).filter(
            Q(last_verified_callback_at__isnull=True)
            | Q(last_verified_callback_at__lt=now - STAMP_EVERY)
            | Q(last_verified_callback_at__lte=F("last_bad_signature_at"))
        ).update(last_verified_callback_at=now)
        team.last_verified_callback_at = now
    if secret is not None and _stale(secret.last_verified_at, now):
        CallbackSecret.objects.filter(pk=secret.pk).filter(
            Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=now - STAMP_EVERY)
        ).update(last_verified_at=now)
        secret.last_verified_at = now


def _stale(stamp: datetime | None, now: datetime) -> bool:
    return stamp is None or now - stamp > STAMP_EVERY


def _team_stamp_due(team: Team, now: datetime) -> bool:
    # A refused callback since the stamp makes the page warn "bad signatures since the last
    # verified one": a good one now must lift that warning at once, not a minute later.
    stamp, bad = team.last_verified_callback_at, team.last_bad_signature_at
    return _stale(stamp, now) or (bad is not None and stamp is not None and bad >= stamp)


def record_bad_signature(team: Team) -> None:
    """For the callback view: a callback for this team failed verification (only counted)."""
    now = timezone.now()
    Team.objects.filter(pk=team.pk).update(
        bad_signature_count=F("bad_signature_count") + 1, last_bad_signature_at=now
    )


def _room_for_one_more(team: Team) -> bool:
    return team.active_secrets().count() < MAX_ACTIVE


def _refuse_if_full(team: Team) -> None:
    if not _room_for_one_more(team):
        raise SecretRefused(
            "Two secrets are already active (a rotation is in progress): retire the older one "
            "before adding another."
        )


@sensitive_variables()
def create_secret(team: Team, *, actor: Any = None) -> CallbackSecret:
    """One click: POST /v1/callback-secrets with the team's default key, store the answer."""
    _refuse_if_full(team)
    key = team.default_key()
    try:
        with client_for_team(team) as client:
            try:
                info = client.create_callback_secret(label=f"runflow-site: {team.name}"[:255])
            except OutcomeUnknown:
                raise SecretRefused(
                    "Runflow may have created a secret, but its answer was lost and the secret "
                    "cannot be read again. Create another one here, and delete the stray one "
                    "in Runflow's dashboard."
                ) from None
            if not info.plain_secret:
                raise SecretRefused(
                    "Runflow created a secret but did not return its value. Create one in "
                    "Runflow's dashboard and paste it here instead."
                )
            if info.is_current is False:
                # Runflow signs with its *current* secret: make the new one current so the
                # cut-over starts now (the old one still verifies here until retired).
                try:
                    client.update_callback_secret(info.id, is_current=True)
                except RunflowError as error:
                    logger.warning("Could not make callback secret current: %s", error.message)
    except ConnectionUnavailable as error:
        raise SecretRefused(error.message) from None
    except RunflowError as error:
        if breaker.counts_against_breaker(error):
            breaker.record_upstream_failure(team, error.message)
        raise SecretRefused(f"Runflow did not create the secret: {error.message}") from None
    breaker.record_upstream_success(team)
    return _store(team, info.plain_secret, actor=actor, via="runflow", key=key, runflow_id=info.id)


@sensitive_variables()
def paste_secret(team: Team, plain: str, *, actor: Any = None) -> CallbackSecret:
    """Store a secret made in Runflow's dashboard (``whsec_…``)."""
    plain = plain.strip()
    if not SECRET_RE.fullmatch(plain):
        raise SecretRefused(
            "A Runflow callback secret starts with whsec_ and has no spaces: copy the whole "
            "value from Runflow's dashboard."
        )
    _refuse_if_full(team)
    if plain in active_secret_values(team):
        raise SecretRefused("This secret is already active for the team.")
    return _store(team, plain, actor=actor, via="paste")


@sensitive_variables()
def _store(
    team: Team,
    plain: str,
    *,
    actor: Any,
    via: str,
    key: Any = None,
    runflow_id: object = "",
) -> CallbackSecret:
    with transaction.atomic():
        rotating = team.active_secrets().exists()
        secret = CallbackSecret(
            team=team,
            key=key,
            runflow_id=str(runflow_id or "")[:100],
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        secret.set_secret(plain)
        secret.save()
        action = "rotated" if rotating else ("created" if via == "runflow" else "pasted")
        record(
            f"connection.secret_{action}",
            team=team,
            actor=actor,
            target=secret.masked,
            via=via,
            runflow_id=secret.runflow_id,
        )
    return secret


def retire_secret(secret: CallbackSecret, *, actor: Any = None) -> None:
    """Stop accepting callbacks signed with ``secret`` (the end of a rotation)."""
    if secret.retired_at is not None:
        return
    others = secret.team.active_secrets().exclude(pk=secret.pk).filter(needs_reentry=False)
    if not secret.needs_reentry and not others.exists():
        raise SecretRefused(
            "This is the team's only working secret: without one, callbacks are refused and "
            "runs cannot be launched. Create or paste its replacement first."
        )
    secret.retired_at = timezone.now()
    secret.save(update_fields=["retired_at"])
    record(
        "connection.secret_retired",
        team=secret.team,
        actor=actor,
        target=secret.masked,
        runflow_id=secret.runflow_id,
    )


def callback_health(team: Team) -> dict[str, Any]:
    """What the page says about callbacks: received and verified recently, refused ones."""
    now = timezone.now()
    last = team.last_verified_callback_at
    return {
        "url": team.callback_url,
        "last_verified_at": last,
        "verified_recently": last is not None and now - last <= RECENT,
        "bad_signature_count": team.bad_signature_count,
        "last_bad_signature_at": team.last_bad_signature_at,
        "bad_since_verified": team.last_bad_signature_at is not None
        and (last is None or team.last_bad_signature_at > last),
    }
