"""Copy a file from a URL Runflow gave us, without letting that URL reach inside (R7, R8).

The worker fetches URLs it did not choose, so every fetch is treated as hostile:

- http and https only, no credentials in the URL, no odd IP notations (``2130706433``,
  ``0x7f.1``, ``0177.0.0.1``);
- the host is resolved *here*, every address it resolves to must be global (loopback,
  private, link-local, multicast, reserved, shared, IPv4-mapped, 6to4, NAT64, Teredo are all
  refused), and the socket is opened to the address that was checked: there is no second
  lookup an attacker's DNS could answer differently;
- redirects are followed by hand, and each hop goes through the same checks;
- the one exception is the configured sandbox (``settings.SANDBOX_URL`` while
  ``SANDBOX_ENABLED``), matched on scheme, host and port exactly;
- a size cap (``ARCHIVE_MAX_BYTES``) and a wall-clock deadline bound every download, however
  slowly the other end drips bytes;
- the content type comes from the bytes, never from the server's label
  (``runs.mediainfo.sniff``): images, video and audio only, SVG and HTML never.

Errors say what happened in words a person can act on, and never contain the URL itself: a
presigned URL is a bearer credential for the file.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import ipaddress
import re
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

from django.conf import settings

from runs.mediainfo import Sniffed, sniff

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
# Bytes kept in memory before the download spills to a temporary file.
SPOOL_BYTES = 4 * 1024 * 1024
USER_AGENT = "runflow-site archiver"

# Ranges that ``is_global`` has let through on some Python versions (CVE-2024-4032) or that
# embed an IPv4 address an attacker chooses: refused outright, whatever ``is_global`` says.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",
        "198.18.0.0/15",
        "::ffff:0:0/96",  # IPv4-mapped
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local-use NAT64
        "2001::/32",  # Teredo
        "2002::/16",  # 6to4
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
    )
)
# A host made only of digits, dots and hex: an IP literal in some notation.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
_DOTTED_QUAD = re.compile(
    r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
)


class ArchiveError(Exception):
    """Base: the file could not be copied. ``str()`` is a sentence for the run page."""


class Refused(ArchiveError):
    """Unsafe address or unacceptable content: never retried."""


class LinkExpired(ArchiveError):
    """The link answered 403 or 410: presigned links do that once they expire."""


class FetchFailed(ArchiveError):
    """A failure that may pass (connection, timeout, 5xx): retried until the link expires."""


@dataclass
class Downloaded:
    """A fetched file, checked: its bytes sit in ``file`` (rewound), never in memory twice."""

    file: IO[bytes]
    size: int
    sha256: str
    sniffed: Sniffed

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line
    is_sandbox: bool


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address (R8)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return False  # never decide on the embedded IPv4 form: refuse the whole range
    if any(ip in network for network in _BLOCKED_NETWORKS if network.version == ip.version):
        return False
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_private
        and not ip.is_reserved
        and not ip.is_unspecified
    )


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"The file's host name could not be resolved ({exc}).") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_target(url: str) -> Target:
    """Check the URL's shape; raise ``Refused`` for anything that is not a plain web URL."""
    if not isinstance(url, str) or len(url) > 8192:
        raise Refused("The file's address is not a web address.")
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise Refused("The file's address contains spaces or control characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(f"Only http and https files are copied, not {scheme or 'this'}: addresses.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Refused("The file's address carries credentials; it was not fetched.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise Refused("The file's address has no host.")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise Refused("The file's address has an invalid port.") from None
    if _NUMERIC_HOST.match(host) and not _DOTTED_QUAD.match(host):
        raise Refused("The file's host is an IP address in an unusual notation; refused.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port, path, _is_sandbox(scheme, host, port))


def _is_sandbox(scheme: str, host: str, port: int) -> bool:
    if not getattr(settings, "SANDBOX_ENABLED", False) or not settings.SANDBOX_URL:
        return False
    sandbox = urlsplit(settings.SANDBOX_URL)
    sandbox_scheme = sandbox.scheme.lower()
    try:
        sandbox_port = sandbox.port or (443 if sandbox_scheme == "https" else 80)
    except ValueError:
        return False
    sandbox_host = (sandbox.hostname or "").rstrip(".").lower()
    return (scheme, host, port) == (sandbox_scheme, sandbox_host, sandbox_port)


def vetted_addresses(target: Target, resolver: Resolver) -> list[str]:
    """The addresses we may connect to for ``target``; ``Refused`` if any is not public.

    All of them must pass, not just one: a name that resolves to a public *and* a private
    address is how DNS rebinding hides.
    """
    try:
        literal: IPAddress | None = ipaddress.ip_address(target.host.strip("[]"))
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else list(resolver(target.host, target.port))
    if not addresses:
        raise FetchFailed("The file's host name resolved to no address.")
    if target.is_sandbox:
        return addresses
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise Refused("The file's host resolved to an unreadable address.") from None
        if not is_public_address(ip):
            raise Refused(
                "The file's host is a private, loopback or otherwise non-public address; "
                "it was not fetched."
            )
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Speaks HTTP to ``host`` while the socket goes to the already-vetted ``address``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: each one loads the system's CA store, which cost more than a
    # small download. Sharing a context between connections and threads is safe.
    return ssl.create_default_context()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, address, timeout)
        self._context = _tls_context()

    def connect(self) -> None:
        super().connect()
        # The certificate is checked against the host name, not the address we dialled.
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def download(
    url: str,
    *,
    max_bytes: int | None = None,
    timeout: float | None = None,
    resolver: Resolver = system_resolver,
) -> Downloaded:
    """Fetch ``url`` safely and return its checked bytes; raise an ``ArchiveError``."""
    limit = max_bytes if max_bytes is not None else settings.ARCHIVE_MAX_BYTES
    budget = timeout if timeout is not None else getattr(settings, "ARCHIVE_TIMEOUT", 120.0)
    deadline = time.monotonic() + budget
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = parse_target(current)
        addresses = vetted_addresses(target, resolver)
        response, connection = _request(target, addresses, deadline)
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchFailed("The file's server answered a redirect without a target.")
                current = urljoin(current, location)
                continue
            _check_status(response.status)
            return _read_body(response, connection, limit, deadline)
        finally:
            connection.close()
    raise Refused(f"The file's address redirected more than {MAX_REDIRECTS} times.")


def _request(
    target: Target, addresses: list[str], deadline: float
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    last_error: Exception | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection_class = (
            _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        )
        connection = connection_class(target.host, target.port, address, min(remaining, 15.0))
        try:
            connection.putrequest("GET", target.path, skip_accept_encoding=True)
            connection.putheader("Accept", "image/*, video/*, audio/*")
            connection.putheader("Accept-Encoding", "identity")
            connection.putheader("User-Agent", USER_AGENT)
            connection.endheaders()
            return connection.getresponse(), connection
        except ssl.SSLError as exc:
            connection.close()
            last_error = exc
            raise FetchFailed(f"The file's server failed the TLS check ({exc.reason}).") from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            last_error = exc
    if last_error is None:
        raise FetchFailed("The download ran out of time before it could start.")
    raise FetchFailed(f"The file's server could not be reached ({_describe(last_error)}).")


def _check_status(status: int) -> None:
    if status == 200:
        return
    if status in (401, 403, 410):
        raise LinkExpired(f"The file's link answered HTTP {status}: it has expired.")
    if status == 429 or status >= 500 or status == 404:
        raise FetchFailed(f"The file's server answered HTTP {status}.")
    raise Refused(f"The file's server answered HTTP {status}; the file was not copied.")


def _read_body(
    response: http.client.HTTPResponse,
    connection: http.client.HTTPConnection,
    limit: int,
    deadline: float,
) -> Downloaded:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(f"The file is larger than the {_size(limit)} limit.")
    digest = hashlib.sha256()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned)
    size = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchFailed("The download took too long and was stopped.")
            # Each read waits at most this long and the deadline is checked between reads,
            # so a server dripping a byte at a time cannot hold the worker past the deadline.
            if connection.sock is not None:
                connection.sock.settimeout(min(remaining, 15.0))
            try:
                chunk = response.read1(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise FetchFailed(f"The download was interrupted ({_describe(exc)}).") from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise Refused(f"The file is larger than the {_size(limit)} limit.")
            digest.update(chunk)
            spool.write(chunk)
        if declared and declared.isdigit() and int(declared) != size:
            raise FetchFailed("The download ended before the whole file arrived.")
        if size == 0:
            raise FetchFailed("The file's server sent an empty file.")
        spool.seek(0)
        sniffed = sniff(spool.read(4096))
        if sniffed is None:
            raise Refused(
                "The file is not an image, video or audio file we accept (checked on its "
                f"bytes; the server called it {_label(response)})."
            )
        spool.seek(0)
        return Downloaded(spool, size, digest.hexdigest(), sniffed)
    except BaseException:
        spool.close()
        raise


def _label(response: http.client.HTTPResponse) -> str:
    label = (response.getheader("Content-Type") or "").split(";", 1)[0].strip()[:60]
    return label or "nothing"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return type(exc).__name__


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.0f} MiB"
    if count >= 1024:
        return f"{count / 1024:.0f} KiB"
    return f"{count} bytes"
