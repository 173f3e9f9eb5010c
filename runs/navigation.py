"""The main navigation, built from URL names so each area's link appears with its view."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from runs.models import Membership

# (label, URL name, the lowest role that sees it). Every name takes the team uuid.
SECTIONS = [
    ("Runs", "runs:team", "viewer"),
    ("Models", "runs:models", "viewer"),
    ("Gallery", "runs:gallery", "viewer"),
    ("Usage", "runs:usage", "viewer"),
    ("Team", "runs:team_settings", "viewer"),
]


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    url_name: str


def links_for(membership: Membership | None) -> list[NavLink]:
    if membership is None:
        return []
    links = []
    for label, name, role in SECTIONS:
        if not membership.has_role(role):
            continue
        try:
            url = reverse(name, args=[membership.team.uuid])
        except NoReverseMatch:
            continue  # that area is not installed yet
        links.append(NavLink(label, url, name.split(":", 1)[1]))
    return links
