"""Read-only share links: create, list, revoke, and the public page behind a link.

The public page shows the shared runs' inputs and outputs and nothing else of the team: no
team name, no people, no costs, no links into the workspace. A link is an unguessable token
(``secrets.token_urlsafe(32)``); expired and revoked links answer 404 like unknown ones.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from runs.access import membership_for
from runs.history import parse_uuids, team_runs
from runs.models import Output, Role, ShareLink, record
from runs.views.media import live_share
from runs.views.runs import WorkspaceRequest

MAX_SHARED_RUNS = 100
EXPIRY_CHOICES = [
    ("", "Never"),
    ("1", "In 1 day"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
]


class ShareForm(forms.Form):
    title = forms.CharField(
        max_length=200, required=False, help_text="Shown at the top of the shared page."
    )
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Link stops working")


@login_required
@require_GET
def share_list(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    links = (
        membership.team.share_links.select_related("created_by")
        .prefetch_related(Prefetch("runs", queryset=team_runs(membership.team).only("uuid")))
        .order_by("-created_at")[:200]
    )
    context = {
        "team": membership.team,
        "membership": membership,
        "links": links,
        "now": timezone.now(),
        "fresh": request.GET.get("new", ""),
        # The address people will open: the site's public URL, not the host this request
        # happened to reach (behind a proxy that may be an internal name).
        "site_url": settings.SITE_URL.rstrip("/"),
    }
    return render(request, "runs/shared_links.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def share_create(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.MEMBER)
    data = request.POST if request.method == "POST" else request.GET
    wanted = parse_uuids(data.getlist("runs"), MAX_SHARED_RUNS)
    runs = list(team_runs(membership.team).filter(uuid__in=wanted).order_by("-created_at"))
    form = ShareForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and runs and form.is_valid():
        days = form.cleaned_data["expires"]
        with transaction.atomic():
            link = ShareLink.objects.create(
                team=membership.team,
                title=form.cleaned_data["title"],
                created_by=request.user,
                expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
            )
            link.runs.set(runs)
            record(
                "share.created",
                team=membership.team,
                actor=request.user,
                target=link.title or f"{len(runs)} run(s)",
                runs=len(runs),
            )
        messages.success(request, "Share link created. Anyone with it can see these runs.")
        return redirect(f"{reverse('runs:shares', args=[membership.team.uuid])}?new={link.token}")
    context = {"team": membership.team, "membership": membership, "runs": runs, "form": form}
    return render(request, "runs/shared_new.html", context, status=200 if runs else 400)


@login_required
@require_POST
def share_revoke(request: WorkspaceRequest, team: UUID, token: str) -> HttpResponse:
    membership = membership_for(request, team, role=Role.MEMBER)
    link = get_object_or_404(ShareLink, team=membership.team, token=token)
    if link.revoked_at is None:
        ShareLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
        record("share.revoked", team=membership.team, actor=request.user, target=link.title)
    messages.success(request, "Link revoked: it no longer opens anything.")
    return redirect("runs:shares", membership.team.uuid)


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    """The public, read-only page behind a share link (no login)."""
    link = live_share(token)
    outputs = Prefetch("outputs", queryset=Output.objects.order_by("index"))
    runs = list(
        link.runs.filter(team_id=link.team_id, deleted_at__isnull=True)
        .prefetch_related(outputs)
        .order_by("-created_at", "-id")
    )
    response = render(request, "runs/shared.html", {"link": link, "runs": runs})
    # A shared page is for the people it was sent to, not for search engines or caches.
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response
