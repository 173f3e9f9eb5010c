"""The output downloader refuses hostile URLs without ever connecting to them (R8)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runs import archive
from runs.archive import FetchFailed, LinkExpired, Refused, download, is_public_address
from tests.archive_support import (
    FileServer,
    Recorder,
    endless,
    png_bytes,
    redirect,
    send,
)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    listener = Recorder()
    yield listener
    listener.close()


@pytest.fixture
def files(settings: Any) -> Iterator[FileServer]:
    server = FileServer()
    settings.SANDBOX_URL = server.origin
    settings.SANDBOX_ENABLED = True
    yield server
    server.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address the downloader opens a socket to."""
    opened: list[tuple[str, int]] = []
    real = socket.create_connection

    def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


# ---- the hostile corpus ----


def hostile_urls(port: int) -> list[str]:
    return [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        f"http://127.0.0.1:{port}/a.png",
        f"https://127.0.0.1:{port}/a.png",
        f"http://[::1]:{port}/a.png",
        f"http://localhost:{port}/a.png",
        f"http://2130706433:{port}/a.png",
        f"http://0x7f000001:{port}/a.png",
        f"http://0x7f.1:{port}/a.png",
        f"http://127.1:{port}/a.png",
        f"http://0177.0.0.1:{port}/a.png",
        f"http://[::ffff:127.0.0.1]:{port}/a.png",
        f"http://[::ffff:7f00:1]:{port}/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/a.png",
        "http://10.0.0.5/a.png",
        "http://172.16.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://100.64.0.1/a.png",
        "http://0.0.0.0/a.png",
        "http://[::]/a.png",
        "http://224.0.0.1/a.png",
        "http://240.0.0.1/a.png",
        "http://[fd00::1]/a.png",
        "http://[ff02::1]/a.png",
        "http://[2002:7f00:1::]/a.png",
        "http://[64:ff9b::7f00:1]/a.png",
        "http://[2001:0:7f00:1::]/a.png",
        f"http://user:pass@127.0.0.1:{port}/a.png",
        f"http://example.com@127.0.0.1:{port}/a.png",
        "http:///a.png",
        "http://exa mple.com/a.png",
        "http://example.com:99999/a.png",
    ]


def test_hostile_corpus_is_refused_without_a_connection(
    recorder: Recorder, connects: list[tuple[str, int]]
) -> None:
    corpus = hostile_urls(recorder.port)
    for url in corpus:
        with pytest.raises(Refused):
            download(url, timeout=2)
    time.sleep(0.2)
    assert recorder.connections == []
    assert connects == []
    assert len(corpus) >= 35


def test_ipv6_loopback_listener_is_never_reached(connects: list[tuple[str, int]]) -> None:
    try:
        listener = Recorder(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        for url in (
            f"http://[::1]:{listener.port}/x",
            f"http://[0:0:0:0:0:0:0:1]:{listener.port}/x",
        ):
            with pytest.raises(Refused):
                download(url, timeout=2)
        time.sleep(0.2)
        assert listener.connections == [] and connects == []
    finally:
        listener.close()


def test_name_resolving_to_a_private_address_is_refused(connects: list[tuple[str, int]]) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["10.0.0.5"]

    with pytest.raises(Refused):
        download("https://cdn.example.test/a.png", resolver=resolver, timeout=2)
    assert connects == []


def test_name_resolving_to_public_and_private_addresses_is_refused(
    connects: list[tuple[str, int]],
) -> None:
    # DNS rebinding hides a private address behind a public one: every address must pass.
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    with pytest.raises(Refused):
        download("https://cdn.example.test/a.png", resolver=resolver, timeout=2)
    assert connects == []


def test_socket_goes_to_the_vetted_address_not_a_second_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Resolved once to a public address: the connection must go there (and fail here,
    # offline), not to whatever a second lookup of the name would say.
    dialled: list[tuple[str, int]] = []

    def fake_connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        dialled.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.216.34"]

    with pytest.raises(FetchFailed):
        download("http://cdn.example.test/a.png", resolver=resolver, timeout=2)
    assert dialled == [("93.184.216.34", 80)]
    assert lookups == ["cdn.example.test"]


def test_redirect_to_loopback_is_refused(
    files: FileServer, recorder: Recorder, connects: list[tuple[str, int]]
) -> None:
    files.routes["/hop"] = redirect(f"http://127.0.0.1:{recorder.port}/secret")
    files.routes["/hop-mapped"] = redirect(f"http://[::ffff:127.0.0.1]:{recorder.port}/")
    files.routes["/hop-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    files.routes["/hop-file"] = redirect("file:///etc/passwd")
    for path in ("/hop", "/hop-mapped", "/hop-metadata", "/hop-file"):
        with pytest.raises(Refused):
            download(files.url(path), timeout=5)
    time.sleep(0.2)
    assert recorder.connections == []
    assert {address[1] for address in connects} == {files.port}


def test_redirect_loop_is_refused(files: FileServer) -> None:
    files.routes["/loop"] = redirect("/loop")
    with pytest.raises(Refused, match="redirected"):
        download(files.url("/loop"), timeout=5)


def test_sandbox_exception_is_exact(files: FileServer, settings: Any) -> None:
    files.routes["/a.png"] = send(png_bytes(), "image/png")
    # Same server under another name or port is not the configured sandbox.
    with pytest.raises(Refused):
        download(f"http://localhost:{files.port}/a.png", timeout=5)
    settings.SANDBOX_ENABLED = False
    with pytest.raises(Refused):
        download(files.url("/a.png"), timeout=5)


@pytest.mark.parametrize(
    ("body", "label"),
    [
        (b"<!doctype html><html><script>alert(1)</script></html>", "image/png"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/svg+xml",
        ),
        (b"<?xml version='1.0'?><svg/>", "image/png"),
        (b"%PDF-1.7 not an image", "image/jpeg"),
        (b"MZ\x90\x00 an executable", "video/mp4"),
        (b"plain text", "audio/mpeg"),
    ],
    ids=["html-as-png", "svg", "xml-as-png", "pdf-as-jpeg", "exe-as-mp4", "text-as-mp3"],
)
def test_content_type_is_judged_on_the_bytes(files: FileServer, body: bytes, label: str) -> None:
    files.routes["/file"] = send(body, label)
    with pytest.raises(Refused, match="not an image, video or audio"):
        download(files.url("/file"), timeout=5)


def test_endless_body_stops_at_the_size_cap(files: FileServer) -> None:
    files.routes["/endless"] = endless()
    started = time.monotonic()
    with pytest.raises(Refused, match="larger than"):
        download(files.url("/endless"), max_bytes=2 * 1024 * 1024, timeout=10)
    assert time.monotonic() - started < 5


def test_declared_oversize_is_refused_before_reading(files: FileServer) -> None:
    files.routes["/big"] = send(png_bytes(), "image/png")
    with pytest.raises(Refused, match="larger than"):
        download(files.url("/big"), max_bytes=10, timeout=5)


def test_slow_drip_stops_at_the_deadline(files: FileServer) -> None:
    files.routes["/drip"] = endless(pause=0.05)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="too long"):
        download(files.url("/drip"), timeout=1.0)
    assert time.monotonic() - started < 3


def test_expired_link_is_reported_as_such(files: FileServer) -> None:
    files.routes["/gone"] = send(b"<Error>Request has expired</Error>", "application/xml", 403)
    with pytest.raises(LinkExpired, match="expired"):
        download(files.url("/gone"), timeout=5)


def test_server_error_is_retryable(files: FileServer) -> None:
    files.routes["/oops"] = send(b"oops", "text/plain", 503)
    with pytest.raises(FetchFailed, match="503"):
        download(files.url("/oops"), timeout=5)


def test_unreachable_sandbox_is_retryable(settings: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.SANDBOX_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(FetchFailed, match="could not be reached"):
        download(f"http://127.0.0.1:{port}/a.png", timeout=2)


def test_good_file_is_downloaded_with_hash_and_type(files: FileServer) -> None:
    import hashlib

    body = png_bytes()
    files.routes["/ok.bin"] = send(body, "application/octet-stream")  # label ignored
    got = download(files.url("/ok.bin?X-Amz-Signature=abc"), timeout=5)
    try:
        assert got.size == len(body)
        assert got.sha256 == hashlib.sha256(body).hexdigest()
        assert got.sniffed.content_type == "image/png"
        assert got.file.read() == body
    finally:
        got.close()


def test_redirect_within_the_allowed_origin_is_followed(files: FileServer) -> None:
    files.routes["/start"] = redirect("/final")
    files.routes["/final"] = send(png_bytes(), "image/png")
    got = download(files.url("/start"), timeout=5)
    got.close()
    assert files.hits[-2:] == ["/start", "/final"]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("192.0.0.8", False),
        ("198.18.0.1", False),
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::ffff:93.184.216.34", False),
        ("64:ff9b::5db8:d822", False),
        ("64:ff9b:1::1", False),
        ("2002:5db8:d822::1", False),
        ("2001::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("ff0e::1", False),
    ],
)
def test_public_address_table(address: str, public: bool) -> None:
    import ipaddress

    assert is_public_address(ipaddress.ip_address(address)) is public


def test_error_messages_never_contain_the_url(files: FileServer) -> None:
    files.routes["/gone"] = send(b"", "text/plain", 410)
    secret_query = "X-Amz-Signature=topsecretsignature"
    with pytest.raises(LinkExpired) as caught:
        download(files.url(f"/gone?{secret_query}"), timeout=5)
    assert "topsecret" not in str(caught.value)
    assert archive.USER_AGENT  # the downloader names itself


def test_https_connections_share_one_tls_context() -> None:
    # Each context loads the system's CA store; building one per download cost more than a
    # small file's copy. Connections are made, never opened, so nothing is dialled.
    from runs.archive import _PinnedHTTPSConnection

    first = _PinnedHTTPSConnection("a.example.test", 443, "203.0.113.1", 5.0)
    second = _PinnedHTTPSConnection("b.example.test", 443, "203.0.113.2", 5.0)
    assert first._context is second._context
    assert first._context.check_hostname and first._context.verify_mode == ssl.CERT_REQUIRED
