"""The Runflow connection page: keys, callback secrets and the breaker. Team admins only.

Views that receive a key or a secret are wrapped in ``sensitive_post_parameters`` (the
value is starred in error reports) and ``sensitive_variables`` (so are the locals of every
frame below them), and they never echo it back: the fields are password inputs that do not
render their value.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from runs import connection
from runs.access import AuthedRequest, membership_for, team_object
from runs.connection import breaker, endpoints
from runs.connection.callback_secrets import active_secrets, callback_health
from runs.connection.keys import KeyCheck, missing_scopes, remembered_balance
from runs.forms.connection import ConnectKeyForm, PasteSecretForm, ReenterKeyForm
from runs.models import CallbackSecret, Membership, Role, RunflowKey
from runs.tasks.catalog import request_sync

# What the connection package raises when it will not (or cannot) do what was asked; each
# carries a ``message`` written for the admin.
REFUSALS = (connection.KeyRefused, connection.SecretRefused, connection.ConnectionUnavailable)

Action = Callable[..., None]
Save = Callable[[AuthedRequest, Membership, dict[str, Any]], None]


@login_required
@require_GET
def connection_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    return _render(request, membership)


# ---------------------------------------------------------------- the page's two forms


def _submit(
    request: AuthedRequest,
    membership: Membership,
    form: forms.Form,
    *,
    slot: str,
    refused_field: str,
    save: Save,
) -> HttpResponse:
    """One of the page's forms: ``save`` the valid data (it adds its own messages), or show
    the page again with the form's errors, a refusal under the field it is about."""
    if form.is_valid():
        try:
            save(request, membership, form.cleaned_data)
        except REFUSALS as error:
            field = getattr(error, "field", refused_field)
            form.add_error(field if field in form.fields else None, error.message)
        else:
            return redirect("runs:connection", membership.team.uuid)
    return _render(request, membership, **{slot: form})


@login_required
@require_POST
@sensitive_post_parameters("api_key")
@sensitive_variables()
def key_add(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = ConnectKeyForm(request.POST)
    return _submit(
        request, membership, form, slot="key_form", refused_field="api_key", save=_connect
    )


def _connect(request: AuthedRequest, membership: Membership, data: dict[str, Any]) -> None:
    key, result = connection.connect_key(
        membership.team,
        label=data["label"],
        api_url=data["api_url"],
        plain=data["api_key"],
        actor=request.user,
        make_default=data["make_default"],
    )
    _report_check(request, f"Connected “{key.label}” ({key.masked})", result)
    # Fetch this endpoint's catalog now, so the Models page fills without waiting for the
    # next scheduled sync (a sync already under way is not asked for twice).
    request_sync(key.api_url, key)


@login_required
@require_POST
@sensitive_post_parameters("secret")
@sensitive_variables()
def secret_paste(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = PasteSecretForm(request.POST)
    return _submit(
        request, membership, form, slot="secret_form", refused_field="secret", save=_paste
    )


def _paste(request: AuthedRequest, membership: Membership, data: dict[str, Any]) -> None:
    secret = connection.paste_secret(membership.team, data["secret"], actor=request.user)
    messages.success(request, f"Callback secret {secret.masked} saved.")


# ---------------------------------------------------------------- the page's buttons


def connection_action(view: Action) -> Callable[..., HttpResponse]:
    """A button on the connection page, POST only: the view does its one thing and says so
    in a message; a refusal is shown instead; either way the admin is back on the page."""

    @login_required
    @require_POST
    @wraps(view)
    def action(request: AuthedRequest, team: UUID, **ids: UUID) -> HttpResponse:
        try:
            view(request, team, **ids)
        except REFUSALS as error:
            messages.error(request, error.message)
        return redirect("runs:connection", team)

    return action


def _key(request: AuthedRequest, team: UUID, key: UUID, *, active_only: bool) -> RunflowKey:
    keys = RunflowKey.objects.filter(revoked_at__isnull=True) if active_only else RunflowKey.objects
    return team_object(request, team, keys.all(), role=Role.ADMIN, uuid=key)[1]


@connection_action
@sensitive_post_parameters("api_key")
@sensitive_variables()
def key_reenter(request: AuthedRequest, team: UUID, key: UUID) -> None:
    target = _key(request, team, key, active_only=True)
    form = ReenterKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for e in form.errors.get("api_key", [])))
        return
    result = connection.reenter_key(target, form.cleaned_data["api_key"], actor=request.user)
    _report_check(request, f"“{target.label}” entered again ({target.masked})", result)


@connection_action
def key_check(request: AuthedRequest, team: UUID, key: UUID) -> None:
    target = _key(request, team, key, active_only=True)
    _report_check(request, f"“{target.label}” works", connection.recheck_key(target))


@connection_action
def key_default(request: AuthedRequest, team: UUID, key: UUID) -> None:
    target = _key(request, team, key, active_only=False)
    connection.set_default_key(target, actor=request.user)
    messages.success(request, f"“{target.label}” is now the team's default key.")


@connection_action
def key_revoke(request: AuthedRequest, team: UUID, key: UUID) -> None:
    target = _key(request, team, key, active_only=False)
    successor = connection.revoke_key(target, actor=request.user)
    messages.success(
        request,
        f"“{target.label}” is revoked here: the site will not use it again. Delete it in "
        "Runflow's dashboard too if it should stop working everywhere.",
    )
    if successor is not None:
        messages.info(request, f"“{successor.label}” is now the default key.")


@connection_action
def secret_create(request: AuthedRequest, team: UUID) -> None:
    membership = membership_for(request, team, role=Role.ADMIN)
    secret = connection.create_secret(membership.team, actor=request.user)
    messages.success(request, f"Callback secret {secret.masked} created at Runflow and saved.")


@connection_action
def secret_retire(request: AuthedRequest, team: UUID, secret: UUID) -> None:
    _, target = team_object(
        request, team, CallbackSecret.objects.all(), role=Role.ADMIN, uuid=secret
    )
    connection.retire_secret(target, actor=request.user)
    messages.success(
        request,
        f"Secret {target.masked} retired: callbacks signed with it are refused from now on. "
        "Delete it in Runflow's dashboard as well.",
    )


def _report_check(request: AuthedRequest, what: str, result: KeyCheck) -> None:
    facts = [f"organization {result.org_name}"] if result.org_name else []
    if result.balance is not None:
        facts.append(f"balance {result.balance:.2f} {result.currency}")
    messages.success(request, f"{what}: {', '.join(facts) or 'Runflow accepted it'}.")
    for warning in result.warnings:
        messages.warning(request, warning)


def _render(request: AuthedRequest, membership: Membership, **bound: forms.Form) -> HttpResponse:
    """The page; ``bound`` holds a form sent back with its errors (key_form, secret_form)."""
    team = membership.team
    keys = list(team.runflow_keys.filter(revoked_at__isnull=True).order_by("-is_default", "label"))
    for key in keys:
        key.balance_info = remembered_balance(key)  # type: ignore[attr-defined]
        key.endpoint_label = endpoints.label_for(key.api_url)  # type: ignore[attr-defined]
        key.missing_scopes = missing_scopes(key.scopes or [])  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "team": team,
        "membership": membership,
        "keys": keys,
        "revoked_keys": team.runflow_keys.filter(revoked_at__isnull=False).order_by("-revoked_at")[
            :10
        ],
        "secrets": active_secrets(team),
        "retired_secrets": team.callback_secrets.filter(retired_at__isnull=False).order_by(
            "-retired_at"
        )[:10],
        "health": callback_health(team),
        "breaker": breaker.state(team),
        "breaker_threshold": breaker.threshold(),
        "blocker": connection.launch_blocker(team),
        "key_form": bound.get("key_form") or ConnectKeyForm(initial={"label": _next_label(keys)}),
        "reenter_form": ReenterKeyForm(),
        "secret_form": bound.get("secret_form") or PasteSecretForm(),
        "max_secrets": 2,
    }
    return render(request, "teams/connection.html", context)


def _next_label(keys: list[RunflowKey]) -> str:
    return "Main" if not keys else f"Key {len(keys) + 1}"
