from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from runs.access import current_membership
from runs.models import Membership
from runs.navigation import links_for


def workspace(request: HttpRequest) -> dict[str, Any]:
    """The current team and the team switcher, for the navigation bar.

    Lazy: pages that never render the navigation (htmx partials) never query for it.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def membership() -> Membership | None:
        return getattr(request, "membership", None) or current_membership(request)

    def memberships() -> list[Membership]:
        return list(
            Membership.objects.select_related("team").filter(user=user).order_by("team__name")
        )

    current = SimpleLazyObject(membership)
    return {
        "current": current,
        "nav_links": SimpleLazyObject(lambda: links_for(membership())),
        "my_memberships": SimpleLazyObject(memberships),
    }
