"""The connection summary for the team settings card (no key is ever in it)."""

from __future__ import annotations

from django import template

from runs.connection.status import Summary, summary
from runs.models import Team

register = template.Library()


@register.simple_tag
def connection_summary(team: Team) -> Summary:
    return summary(team)
