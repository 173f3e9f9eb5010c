"""The Demo team on the local sandbox: a key and a callback secret, made once, kept working."""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
import time
from collections.abc import Callable

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from runs.connection import endpoints
from runs.connection.callback_secrets import (
    SecretRefused,
    active_secrets,
    create_secret,
    retire_secret,
)
from runs.connection.keys import (
    KeyCheck,
    KeyRefused,
    check_key,
    connect_key,
    decrypt,
    mark_unreadable,
    open_client,
    remember_check,
)
from runs.fields import DecryptionError
from runs.models import CallbackSecret, RunflowKey, Team, record
from runs.runflow import NotFound, RunflowError, Unavailable

logger = logging.getLogger(__name__)

SANDBOX_LABEL = "Sandbox"
BOOT_WAIT = 15.0  # seconds: serve starts the sandbox a moment before calling ensure_demo


def _new_demo_key() -> str:
    # The sandbox takes any rf_live_/rf_svc_ key of letters and digits as its own org. A
    # service (admin) key, so that the demo's admins can try "Cancel run" too: Runflow
    # cancels only through its admin route.
    alphabet = string.ascii_letters + string.digits
    return "rf_svc_demo" + "".join(secrets.choice(alphabet) for _ in range(20))


@sensitive_variables()
def connect_sandbox(
    team: Team, *, wait: float = BOOT_WAIT, sleep: Callable[[float], None] = time.sleep
) -> RunflowKey | None:
    """Give ``team`` a default key on SANDBOX_URL and a callback secret made there.

    Idempotent: run again (every ``serve``), it keeps the key, follows the sandbox to a new
    port, replaces a key or secret that cannot be decrypted, and makes a new secret when the
    sandbox has forgotten the old one (its state lives in memory). Returns the key, or None
    when the sandbox is disabled.
    """
    if not settings.SANDBOX_ENABLED:
        return None
    url = endpoints.normalize(settings.SANDBOX_URL)
    key = (
        team.runflow_keys.filter(revoked_at__isnull=True, label=SANDBOX_LABEL)
        .order_by("created_at")
        .first()
    )
    plain = _readable(key)
    reachable = _wait_for_sandbox(url, plain or _new_demo_key(), wait, sleep)
    if key is None:
        key, _ = connect_key(
            team,
            label=SANDBOX_LABEL,
            api_url=url,
            plain=_new_demo_key(),
            make_default=not team.runflow_keys.filter(revoked_at__isnull=True).exists(),
            check=reachable,
        )
    else:
        changed: list[str] = []
        if key.api_url != url:
            key.api_url, changed = url, [*changed, "api_url"]
        if plain is None:
            key.set_secret(_new_demo_key())
            changed += ["secret", "masked", "needs_reentry"]
        if changed:
            key.save(update_fields=changed)
            record("connection.key_reentered", team=team, target=key.label, via="sandbox")
        if reachable:
            _refresh(key)
    if reachable:
        _ensure_secret(team, key)
    else:
        logger.warning("The sandbox at %s did not answer: the Demo team has no secret yet.", url)
    return key


@sensitive_variables()
def _readable(key: RunflowKey | None) -> str | None:
    if key is None or key.needs_reentry:
        return None
    try:
        return decrypt(key)
    except DecryptionError:
        mark_unreadable(key)
        return None


@sensitive_variables()
def _wait_for_sandbox(url: str, plain: str, wait: float, sleep: Callable[[float], None]) -> bool:
    give_up_at = time.monotonic() + wait
    while True:
        try:
            with open_client(url, plain, max_attempts=1, deadline=3.0) as client:
                client.health()
            return True
        except Unavailable:
            if time.monotonic() >= give_up_at:
                return False
            sleep(0.25)
        except RunflowError:
            return True  # it answered: reachable, whatever it thought of the request


@sensitive_variables()
def _refresh(key: RunflowKey) -> None:
    try:
        result: KeyCheck = check_key(key.api_url, decrypt(key))
    except KeyRefused as error:
        logger.warning("The sandbox refused the Demo key: %s", error.message)
        return
    key.org_id, key.org_name, key.scopes = result.org_id[:100], result.org_name[:200], result.scopes
    key.save(update_fields=["org_id", "org_name", "scopes"])
    remember_check(key, result)


@sensitive_variables()
def _ensure_secret(team: Team, key: RunflowKey) -> None:
    current = [s for s in active_secrets(team) if not s.needs_reentry]
    if current and _known_to_sandbox(key, current[0]):
        return
    try:
        if current and len(active_secrets(team)) >= 2:
            retire_secret(current[-1])
        created = create_secret(team)
    except SecretRefused as error:
        logger.warning("Could not create the Demo team's callback secret: %s", error.message)
        return
    # The sandbox forgot the old secret(s): it will never sign with them again.
    for stale in current:
        if stale.pk != created.pk and stale.retired_at is None:
            with contextlib.suppress(SecretRefused):
                retire_secret(stale)


@sensitive_variables()
def _known_to_sandbox(key: RunflowKey, secret: CallbackSecret) -> bool:
    runflow_id = secret.runflow_id
    if not runflow_id:
        return True  # pasted by hand: not ours to second-guess
    try:
        with open_client(key.api_url, decrypt(key), max_attempts=1) as client:
            client.get_callback_secret(runflow_id)
        return True
    except NotFound:
        return False
    except (RunflowError, DecryptionError):
        return True  # cannot tell: keep what we have
