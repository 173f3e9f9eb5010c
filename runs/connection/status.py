"""Whether a team can launch, in one sentence, and a summary for the team pages."""

from __future__ import annotations

from dataclasses import dataclass

from runs.connection import breaker, endpoints
from runs.connection.callback_secrets import callback_health
from runs.connection.keys import ConnectionUnavailable, breaker_message, reveal_key
from runs.models import RunflowKey, Team

NO_SECRET = (
    "A team without a secret cannot launch runs with a callback URL: a team admin creates "
    "one on the Runflow connection page."
)


def launch_blocker(team: Team) -> str | None:
    """Why the team cannot launch yet, or None. The launch page links to the connection page.

    Reads only the database (and decrypts the key locally, so a wrong FIELD_ENCRYPTION_KEYS
    shows here, before a launch, rather than in a failed run).
    """
    key = team.default_key()
    if key is None:
        return (
            "This team is not connected to Runflow yet: a team admin adds an API key on the "
            "Runflow connection page."
        )
    if not endpoints.is_allowed(key.api_url):
        return (
            f"The team's key “{key.label}” points at {key.api_url}, which this site no longer "
            "offers: a team admin connects a key for another endpoint."
        )
    try:
        reveal_key(key)
    except ConnectionUnavailable as error:
        return error.message
    if not team.active_secrets().filter(needs_reentry=False).exists():
        return NO_SECRET
    if breaker.state(team).is_open:
        return breaker_message(team)
    return None


@dataclass(frozen=True)
class Summary:
    """The connection at a glance (settings card, page head). Never holds a key."""

    ready: bool
    blocker: str | None
    default_key: RunflowKey | None
    org_name: str
    endpoint: str
    active_secrets: int
    breaker_open: bool
    verified_recently: bool


def summary(team: Team) -> Summary:
    key = team.default_key()
    blocker = launch_blocker(team)
    return Summary(
        ready=blocker is None,
        blocker=blocker,
        default_key=key,
        org_name=key.org_name if key else "",
        endpoint=endpoints.label_for(key.api_url) if key else "",
        active_secrets=team.active_secrets().filter(needs_reentry=False).count(),
        breaker_open=breaker.state(team).is_open,
        verified_recently=bool(callback_health(team)["verified_recently"]),
    )
