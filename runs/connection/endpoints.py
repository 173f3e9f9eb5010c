"""Which Runflow endpoints a team may send its key to.

A key is a bearer credential: whatever URL it is sent to can use it. So the endpoint is
never free text. The choices are the site's own configuration: ``RUNFLOW_API_URL`` (the
default), the local sandbox when it is enabled, and the ``RUNFLOW_API_URLS`` entries. The
form offers them and the service checks again, so a forged POST cannot add another one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Endpoint:
    url: str
    label: str


def normalize(url: str) -> str:
    return (url or "").strip().rstrip("/")


def endpoints() -> list[Endpoint]:
    """The endpoints offered on the connection page, the default first, without repeats."""
    found: dict[str, Endpoint] = {}

    def add(url: str, label: str) -> None:
        url = normalize(url)
        if url and url not in found:
            found[url] = Endpoint(url, label)

    add(settings.RUNFLOW_API_URL, f"Runflow ({normalize(settings.RUNFLOW_API_URL)})")
    if settings.SANDBOX_ENABLED:
        add(settings.SANDBOX_URL, f"Local sandbox ({normalize(settings.SANDBOX_URL)})")
    for url in settings.RUNFLOW_API_URLS:
        add(url, normalize(url))
    return list(found.values())


def default_endpoint() -> str:
    return normalize(settings.RUNFLOW_API_URL)


def is_allowed(url: str) -> bool:
    return normalize(url) in {endpoint.url for endpoint in endpoints()}


def is_sandbox(url: str) -> bool:
    return bool(settings.SANDBOX_ENABLED) and normalize(url) == normalize(settings.SANDBOX_URL)


def label_for(url: str) -> str:
    """How a stored key's endpoint is named on the page (even one no longer offered)."""
    for endpoint in endpoints():
        if endpoint.url == normalize(url):
            return endpoint.label
    return f"{normalize(url)} (no longer offered by this site)"
