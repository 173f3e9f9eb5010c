"""Files the sandbox serves: run outputs, covers, examples, uploads and assets.

Output, upload and asset URLs are presigned like Runflow's: they carry an expiry and an
HMAC over path and expiry, and answer 403 once expired or when tampered with. The sandbox
never fetches a URL from the network: an image input is only "seen" when it points at the
sandbox itself (an output, an uploaded asset) or is a data: URI.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from runs.sandbox import media
from runs.sandbox.catalog import BY_SLUG
from runs.sandbox.config import Config
from runs.sandbox.spec import Spec
from runs.sandbox.state import Asset, OutputFile, Store

ASSET_URL_TTL = 7 * 24 * 3600
UPLOAD_URL_TTL = 3600


@dataclass
class FileAnswer:
    status: int
    content_type: str
    body: bytes = b""
    path: Path | None = None
    message: str = ""
    org_id: str | None = None  # whose file it is, for the ledger


class Links:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._key = secrets.token_bytes(32)
        self._pictures: dict[str, bytes] = {}
        self._pictures_lock = threading.Lock()

    # ---- presigned URLs ----

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()[:40]

    def presign(self, path: str, ttl: float) -> str:
        expires = int(time.time() + ttl)
        signature = self._sign(path, expires)
        return f"{self.config.public_url}{path}?expires={expires}&signature={signature}"

    def check(self, path: str, query: dict[str, list[str]]) -> str | None:
        """None when the presigned URL is valid now, else why not (for a 403)."""
        try:
            expires = int(query.get("expires", [""])[0])
        except ValueError:
            return "This URL is not signed."
        signature = query.get("signature", [""])[0]
        if not hmac.compare_digest(signature, self._sign(path, expires)):
            return "The signature of this URL does not match."
        if time.time() > expires:
            return "Request has expired."
        return None

    def output_url(self, entry: OutputFile, ttl: float | None = None) -> str:
        return self.presign(f"/files/outputs/{entry.key}", ttl or self.config.output_ttl)

    def upload_url(self, asset: Asset) -> str:
        return self.presign(f"/files/uploads/{asset.id}", UPLOAD_URL_TTL)

    def asset_url(self, asset: Asset) -> str:
        return self.presign(f"/files/assets/{asset.id}/{_safe_name(asset.filename)}", ASSET_URL_TTL)

    # ---- image inputs that point at the sandbox ----

    def _local(
        self, url: str, org_id: str, *, check_expiry: bool
    ) -> tuple[Path | None, str | None]:
        if url.startswith("runflow://assets/"):
            asset = self.store.assets.get(url.removeprefix("runflow://assets/").strip("/"))
            if asset is None or asset.org_id != org_id or not asset.confirmed:
                return None, "Unknown asset: upload and confirm it first."
            return asset.path, None
        if not url.startswith(self.config.public_url + "/files/"):
            return None, None
        parts = urlsplit(url)
        segments = parts.path.split("/")
        if check_expiry:
            problem = self.check(parts.path, parse_qs(parts.query))
            if problem:
                return None, f"The sandbox refused this URL: {problem}"
        if len(segments) >= 4 and segments[2] == "outputs":
            entry = self.store.files.get(segments[3])
            return (entry.path, None) if entry else (None, "That output no longer exists.")
        if len(segments) >= 4 and segments[2] == "assets":
            asset = self.store.assets.get(segments[3])
            if asset is None or not asset.confirmed:
                return None, "That asset does not exist."
            return asset.path, None
        return None, None

    def image_problem(self, url: str, org_id: str) -> str | None:
        _, problem = self._local(url, org_id, check_expiry=True)
        return problem

    def load_image(self, url: str, org_id: str) -> Image.Image | None:
        if url.startswith("data:image/"):
            try:
                return media.open_image(base64.b64decode(url.split(",", 1)[1], validate=False))
            except (IndexError, binascii.Error):
                return None
        path, _ = self._local(url, org_id, check_expiry=False)
        if path is None or not path.exists():
            return None
        return media.open_image(path.read_bytes())

    # ---- GET/PUT /files/... ----

    def serve(
        self, method: str, path: str, query: dict[str, list[str]], request: Any
    ) -> FileAnswer:
        segments = path.split("/")[2:]
        if method == "PUT" and len(segments) == 2 and segments[0] == "uploads":
            return self._upload(segments[1], path, query, request)
        if method not in ("GET", "HEAD"):
            return FileAnswer(405, "text/plain", message="Method not allowed.")
        if len(segments) == 2 and segments[0] == "outputs":
            problem = self.check(path, query)
            if problem:
                return FileAnswer(403, "application/xml", _access_denied(problem))
            entry = self.store.files.get(segments[1])
            if entry is None or not entry.path.exists():
                return FileAnswer(404, "text/plain", message="No such output.")
            return FileAnswer(200, entry.content_type, path=entry.path, org_id=entry.org_id)
        if len(segments) == 3 and segments[0] == "assets":
            problem = self.check(path, query)
            if problem:
                return FileAnswer(403, "application/xml", _access_denied(problem))
            asset = self.store.assets.get(segments[1])
            if asset is None or not asset.confirmed:
                return FileAnswer(404, "text/plain", message="No such asset.")
            return FileAnswer(200, asset.mime_type, path=asset.path, org_id=asset.org_id)
        if len(segments) == 2 and segments[0] == "covers" and segments[1].endswith(".png"):
            spec = BY_SLUG.get(segments[1].removesuffix(".png"))
            if spec is None:
                return FileAnswer(404, "text/plain", message="No such cover.")
            return FileAnswer(200, "image/png", self._picture(spec, -1))
        if (
            len(segments) == 3
            and segments[0] == "examples"
            and segments[2].removesuffix(".png").isdigit()
        ):
            spec = BY_SLUG.get(segments[1])
            index = int(segments[2].removesuffix(".png"))
            if spec is None or index >= len(spec.examples):
                return FileAnswer(404, "text/plain", message="No such example.")
            return FileAnswer(200, "image/png", self._picture(spec, index))
        return FileAnswer(404, "text/plain", message="Not found.")

    def _picture(self, spec: Spec, index: int) -> bytes:
        key = f"{spec.slug}:{index}"
        with self._pictures_lock:
            cached = self._pictures.get(key)
        if cached is not None:
            return cached
        if index < 0:
            text, size = spec.name, (640, 360)
        else:
            text, size = str(spec.examples[index]["input"].get("prompt", spec.name)), (512, 512)
        image = media.picture(
            *size, text, media.palette(spec.model_id + text), f"{spec.category} · sandbox"
        )
        data, _, _ = media.encode_image(image, "png")
        with self._pictures_lock:
            self._pictures[key] = data
        return data

    def _upload(
        self, asset_id: str, path: str, query: dict[str, list[str]], request: Any
    ) -> FileAnswer:
        problem = self.check(path, query)
        if problem:
            return FileAnswer(403, "application/xml", _access_denied(problem))
        asset = self.store.assets.get(asset_id)
        if asset is None:
            return FileAnswer(404, "text/plain", message="No such upload.")
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != asset.mime_type.lower():
            return FileAnswer(
                403,
                "application/xml",
                _access_denied(
                    f"Content-Type {content_type or 'none'} is not the declared {asset.mime_type}."
                ),
            )
        length = request.content_length()
        if length is None or length > asset.size_bytes or length > self.config.max_upload_bytes:
            return FileAnswer(
                400,
                "application/xml",
                _access_denied(
                    "Send a Content-Length no larger than the size declared for this upload."
                ),
            )
        request.save_body(asset.path, length)
        with self.store.lock:
            asset.uploaded = True
            asset.size_bytes = length
        return FileAnswer(200, "text/plain", b"", org_id=asset.org_id)


def _safe_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:100]
    return cleaned or "file"


def _access_denied(message: str) -> bytes:
    # The shape S3 answers with, which is what a presigned URL behaves like.
    buffer = io.StringIO()
    buffer.write('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>')
    escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    buffer.write(f"<Message>{escaped}</Message></Error>")
    return buffer.getvalue().encode()
