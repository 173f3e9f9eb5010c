"""The Runflow connection page: keys, callback secrets and the breaker. Team admins only.

Views that receive a key or a secret are wrapped in ``sensitive_post_parameters`` (the
value is starred in error reports) and ``sensitive_variables`` (so are the locals of every
frame below them), and they never echo it back: the fields are password inputs that do not
render their value.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

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


@login_required
@require_GET
def connection_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    return _render(request, membership)


@login_required
@require_POST
@sensitive_post_parameters("api_key")
@sensitive_variables()
def key_add(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = ConnectKeyForm(request.POST)
    if form.is_valid():
        try:
            key, result = connection.connect_key(
                membership.team,
                label=form.cleaned_data["label"],
                api_url=form.cleaned_data["api_url"],
                plain=form.cleaned_data["api_key"],
                actor=request.user,
                make_default=form.cleaned_data["make_default"],
            )
        except connection.KeyRefused as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            _report_check(request, f"Connected “{key.label}” ({key.masked})", result)
            return redirect("runs:connection", team)
    return _render(request, membership, key_form=form)


@login_required
@require_POST
@sensitive_post_parameters("api_key")
@sensitive_variables()
def key_reenter(request: AuthedRequest, team: UUID, key: UUID) -> HttpResponse:
    _, target = team_object(
        request, team, RunflowKey.objects.filter(revoked_at__isnull=True), role=Role.ADMIN, uuid=key
    )
    form = ReenterKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for e in form.errors.get("api_key", [])))
    else:
        try:
            result = connection.reenter_key(
                target, form.cleaned_data["api_key"], actor=request.user
            )
        except connection.KeyRefused as error:
            messages.error(request, error.message)
        else:
            _report_check(request, f"“{target.label}” entered again ({target.masked})", result)
    return redirect("runs:connection", team)


@login_required
@require_POST
def key_check(request: AuthedRequest, team: UUID, key: UUID) -> HttpResponse:
    _, target = team_object(
        request, team, RunflowKey.objects.filter(revoked_at__isnull=True), role=Role.ADMIN, uuid=key
    )
    try:
        result = connection.recheck_key(target)
    except (connection.KeyRefused, connection.ConnectionUnavailable) as error:
        messages.error(request, error.message)
    else:
        _report_check(request, f"“{target.label}” works", result)
    return redirect("runs:connection", team)


@login_required
@require_POST
def key_default(request: AuthedRequest, team: UUID, key: UUID) -> HttpResponse:
    _, target = team_object(request, team, RunflowKey.objects.all(), role=Role.ADMIN, uuid=key)
    try:
        connection.set_default_key(target, actor=request.user)
    except connection.KeyRefused as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"“{target.label}” is now the team's default key.")
    return redirect("runs:connection", team)


@login_required
@require_POST
def key_revoke(request: AuthedRequest, team: UUID, key: UUID) -> HttpResponse:
    _, target = team_object(request, team, RunflowKey.objects.all(), role=Role.ADMIN, uuid=key)
    successor = connection.revoke_key(target, actor=request.user)
    messages.success(
        request,
        f"“{target.label}” is revoked here: the site will not use it again. Delete it in "
        "Runflow's dashboard too if it should stop working everywhere.",
    )
    if successor is not None:
        messages.info(request, f"“{successor.label}” is now the default key.")
    return redirect("runs:connection", team)


@login_required
@require_POST
def secret_create(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    try:
        secret = connection.create_secret(membership.team, actor=request.user)
    except connection.SecretRefused as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Callback secret {secret.masked} created at Runflow and saved.")
    return redirect("runs:connection", team)


@login_required
@require_POST
@sensitive_post_parameters("secret")
@sensitive_variables()
def secret_paste(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = PasteSecretForm(request.POST)
    if form.is_valid():
        try:
            secret = connection.paste_secret(
                membership.team, form.cleaned_data["secret"], actor=request.user
            )
        except connection.SecretRefused as error:
            form.add_error("secret", error.message)
        else:
            messages.success(request, f"Callback secret {secret.masked} saved.")
            return redirect("runs:connection", team)
    return _render(request, membership, secret_form=form)


@login_required
@require_POST
def secret_retire(request: AuthedRequest, team: UUID, secret: UUID) -> HttpResponse:
    _, target = team_object(
        request, team, CallbackSecret.objects.all(), role=Role.ADMIN, uuid=secret
    )
    try:
        connection.retire_secret(target, actor=request.user)
    except connection.SecretRefused as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            f"Secret {target.masked} retired: callbacks signed with it are refused from now on. "
            "Delete it in Runflow's dashboard as well.",
        )
    return redirect("runs:connection", team)


def _report_check(request: AuthedRequest, what: str, result: KeyCheck) -> None:
    facts = [f"organization {result.org_name}"] if result.org_name else []
    if result.balance is not None:
        facts.append(f"balance {result.balance:.2f} {result.currency}")
    messages.success(request, f"{what}: {', '.join(facts) or 'Runflow accepted it'}.")
    for warning in result.warnings:
        messages.warning(request, warning)


def _render(
    request: AuthedRequest,
    membership: Membership,
    *,
    key_form: ConnectKeyForm | None = None,
    secret_form: PasteSecretForm | None = None,
) -> HttpResponse:
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
        "key_form": key_form or ConnectKeyForm(initial={"label": _next_label(keys)}),
        "reenter_form": ReenterKeyForm(),
        "secret_form": secret_form or PasteSecretForm(),
        "max_secrets": 2,
    }
    return render(request, "teams/connection.html", context)


def _next_label(keys: list[RunflowKey]) -> str:
    return "Main" if not keys else f"Key {len(keys) + 1}"
