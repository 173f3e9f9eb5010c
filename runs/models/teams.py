"""Teams, who belongs to them, and how a team connects to Runflow."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from runs.fields import EncryptedSecret, EncryptedTextField, encrypt

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# What each role may do, in one place: views ask `membership.can(...)`.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


class TeamQuerySet(models.QuerySet["Team"]):
    def for_user(self, user: AbstractBaseUser | AnonymousUser) -> TeamQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user)


class Team(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    # Budgets and policy (see usage and budgets). Money is USD, as Runflow reports it.
    monthly_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    confirm_threshold = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Launches estimated above this cost ask for confirmation.",
    )
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    retention_delete_runs = models.BooleanField(default=False)

    # Circuit breaker over this team's Runflow calls (R4).
    breaker_failures = models.PositiveIntegerField(default=0)
    breaker_open_until = models.DateTimeField(null=True, blank=True)
    breaker_reason = models.CharField(max_length=300, blank=True)

    # Refused callbacks are only counted: storing them would let anyone fill our disk (W1).
    bad_signature_count = models.PositiveIntegerField(default=0)
    last_bad_signature_at = models.DateTimeField(null=True, blank=True)
    last_verified_callback_at = models.DateTimeField(null=True, blank=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("runs:team", args=[self.uuid])

    @property
    def callback_url(self) -> str:
        return f"{settings.SITE_URL}/hooks/runflow/{self.uuid}/"

    def membership_for(self, user: AbstractBaseUser | AnonymousUser) -> Membership | None:
        if not user.is_authenticated:
            return None
        return self.memberships.filter(user_id=user.pk).first()

    def default_key(self) -> RunflowKey | None:
        return (
            self.runflow_keys.filter(revoked_at__isnull=True).order_by("-is_default", "id").first()
        )

    def active_secrets(self) -> models.QuerySet[CallbackSecret]:
        return self.callback_secrets.filter(retired_at__isnull=True)


class Membership(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    monthly_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="one_membership_per_team")
        ]
        ordering = ["team__name"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum)]

    @property
    def can_launch(self) -> bool:
        return self.has_role(Role.MEMBER)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def _invitation_token() -> str:
    return secrets.token_urlsafe(24)


def _invitation_expiry() -> datetime:
    return timezone.now() + timedelta(days=7)


class Invitation(models.Model):
    """A one-use link that adds whoever opens it (signed in) to a team with a role."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token = models.CharField(max_length=64, unique=True, default=_invitation_token, editable=False)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=_invitation_expiry)
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation to {self.team} as {self.role}"

    def get_absolute_url(self) -> str:
        return reverse("runs:invitation_accept", args=[self.token])

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.revoked_at is None and self.expires_at > timezone.now()


# Known public prefixes only: a prefix read off the value itself ("up to the last _") would
# show most of a random body that happens to contain underscores.
_SECRET_PREFIX = re.compile(r"rf_[a-z]{2,8}_|whsec_")


def mask_secret(plain: str) -> str:
    """``rf_live_…abcd``: the known prefix and the last four characters, nothing else (S4)."""
    if len(plain) <= 8:
        return "…"
    prefix = _SECRET_PREFIX.match(plain)
    return f"{prefix.group(0) if prefix else ''}…{plain[-4:]}"


class RunflowKey(models.Model):
    """A team's Runflow API key for one endpoint. Write-only: only ``masked`` is shown."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="runflow_keys")
    label = models.CharField(max_length=100)
    api_url = models.URLField(max_length=300)
    secret = EncryptedTextField()
    masked = models.CharField(max_length=40, editable=False)
    is_default = models.BooleanField(default=False)
    needs_reentry = models.BooleanField(
        default=False, help_text="Set when the stored key cannot be decrypted (S2)."
    )
    org_id = models.CharField(max_length=100, blank=True)
    org_name = models.CharField(max_length=200, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_default", "label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.masked})"

    def set_secret(self, plain: str) -> None:
        # Encrypted now, not at save: the instance never holds the plain value (S4).
        self.secret = EncryptedSecret(encrypt(plain))  # type: ignore[assignment]
        self.masked = mask_secret(plain)
        self.needs_reentry = False

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_admin_key(self) -> bool:
        """A service key (``rf_svc_``): the only kind Runflow's admin routes (cancel) accept."""
        return self.masked.startswith("rf_svc_")


class CallbackSecret(models.Model):
    """A ``whsec_`` secret that signs this team's callbacks. Two may verify during rotation."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="callback_secrets")
    key = models.ForeignKey(
        RunflowKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    runflow_id = models.CharField(max_length=100, blank=True, help_text="Id at Runflow, if known.")
    secret = EncryptedTextField()
    masked = models.CharField(max_length=40, editable=False)
    needs_reentry = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Callback secret {self.masked}"

    def set_secret(self, plain: str) -> None:
        self.secret = EncryptedSecret(encrypt(plain))  # type: ignore[assignment]
        self.masked = mask_secret(plain)
        self.needs_reentry = False
