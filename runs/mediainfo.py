"""What a downloaded file really is, read from its bytes (R8, B5).

``sniff`` decides the content type from magic numbers alone: the server's ``Content-Type``
is never trusted, and anything that is not one of the allowed image, video or audio formats
(SVG and HTML above all) is refused. ``describe`` reads dimensions and duration where the
format makes that cheap and safe; ``describe_with_thumbnail`` also makes a small WebP of an
image with Pillow, from the same single decode.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

THUMBNAIL_BOX = (512, 512)
# Pillow refuses to decode past this many pixels: a tiny file that inflates into gigabytes
# of pixels must not take the worker down, nor be served to browsers.
MAX_PIXELS = 80_000_000


@dataclass(frozen=True)
class Sniffed:
    content_type: str
    kind: str  # image | video | audio
    extension: str


@dataclass(frozen=True)
class Facts:
    width: int | None = None
    height: int | None = None
    duration: float | None = None


class Undecodable(Exception):
    """The bytes start like an allowed format but cannot be read as one."""


PNG = Sniffed("image/png", "image", "png")
JPEG = Sniffed("image/jpeg", "image", "jpg")
GIF = Sniffed("image/gif", "image", "gif")
WEBP = Sniffed("image/webp", "image", "webp")
MP4 = Sniffed("video/mp4", "video", "mp4")
WEBM = Sniffed("video/webm", "video", "webm")
WAV = Sniffed("audio/wav", "audio", "wav")
MP3 = Sniffed("audio/mpeg", "audio", "mp3")
OGG = Sniffed("audio/ogg", "audio", "ogg")
FLAC = Sniffed("audio/flac", "audio", "flac")
M4A = Sniffed("audio/mp4", "audio", "m4a")

ALLOWED_TYPES = frozenset(
    s.content_type for s in (PNG, JPEG, GIF, WEBP, MP4, WEBM, WAV, MP3, OGG, FLAC, M4A)
)


def sniff(head: bytes) -> Sniffed | None:
    """The format of a file from its first bytes, or None when it is not one we accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head.startswith(b"RIFF"):
        return {b"WEBP": WEBP, b"WAVE": WAV}.get(head[8:12])
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        return M4A if brand in (b"M4A ", b"M4B ") else MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"ID3") or _is_mpeg_audio_frame(head):
        return MP3
    return None


def _is_mpeg_audio_frame(head: bytes) -> bool:
    # An MPEG audio frame header: 11 sync bits, a valid version, layer III, a valid bitrate.
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0x3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def describe(file: IO[bytes], sniffed: Sniffed) -> Facts:
    """Dimensions and duration where readable; ``Undecodable`` for a broken image."""
    file.seek(0)
    try:
        if sniffed.kind == "image":
            return _image_facts(file)
        reader = {
            "video/mp4": _mp4_facts,
            "audio/mp4": _mp4_facts,
            "audio/wav": _wav_facts,
            "audio/flac": _flac_facts,
            "audio/ogg": _ogg_facts,
        }.get(sniffed.content_type)
        return reader(file) if reader else Facts()
    except (struct.error, ValueError, OSError, ZeroDivisionError):
        # Media we cannot measure is still kept; only images must decode (they are shown).
        return Facts()
    finally:
        file.seek(0)


def describe_with_thumbnail(file: IO[bytes], sniffed: Sniffed) -> tuple[Facts, bytes | None]:
    """``describe`` and, for an image, its thumbnail, from one decode of the image.

    The facts step must decode the whole image anyway (a truncated or fake image fails
    there); decoding it a second time for the thumbnail was most of an archive copy's time.
    """
    if sniffed.kind != "image":
        return describe(file, sniffed), None
    file.seek(0)
    try:
        with _open_image(file) as image:
            facts = Facts(width=image.width, height=image.height)
            # A JPEG decodes straight at a fraction of its size (1/2 to 1/8, never below
            # twice the thumbnail); it still reads every byte, so truncation fails the same.
            image.draft(None, _draft_size(image.size))
            image.load()
            return facts, _thumbnail_of(image)
    except (Undecodable, OSError, SyntaxError) as exc:
        raise Undecodable(f"the image could not be decoded ({exc})") from None
    finally:
        file.seek(0)


def _draft_size(size: tuple[int, int]) -> tuple[int, int]:
    """Twice the thumbnail's own size (as ``Image.thumbnail`` asks of ``draft``)."""
    if min(size) < 1:  # Pillow refuses such files on open; never divide by zero here
        return size
    scale = min(THUMBNAIL_BOX[0] / size[0], THUMBNAIL_BOX[1] / size[1], 1.0)
    return max(1, round(size[0] * scale * 2)), max(1, round(size[1] * scale * 2))


def _thumbnail_of(image: Image.Image) -> bytes | None:
    """The WebP thumbnail of an open image (shrunk in place), or None if it cannot be made.

    A decoded image whose thumbnail fails is still archived, only without a thumbnail.
    """
    try:
        image.thumbnail(THUMBNAIL_BOX)
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        converted = image.convert("RGBA" if has_alpha else "RGB")
        out = io.BytesIO()
        converted.save(out, format="WEBP", quality=80, method=4)
        return out.getvalue()
    except (OSError, ValueError):
        return None


def _open_image(file: IO[bytes]) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(file)
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            raise Undecodable(str(exc)) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise Undecodable(f"{width}x{height} pixels is more than this site processes")
    return image


def _image_facts(file: IO[bytes]) -> Facts:
    try:
        with _open_image(file) as image:
            width, height = image.size
            image.load()  # decode once: a truncated or fake image fails here, not in a page
    except (Undecodable, OSError, SyntaxError) as exc:
        raise Undecodable(f"the image could not be decoded ({exc})") from None
    return Facts(width=width, height=height)


# ---- audio and video containers: small readers of the fields that give duration and size ----


def _boxes(file: IO[bytes], start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO BMFF boxes between ``start`` and ``end``: (type, payload start, payload end)."""
    boxes: list[tuple[bytes, int, int]] = []
    position = start
    while position + 8 <= end and len(boxes) < 10_000:
        file.seek(position)
        header = file.read(8)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header)
        payload = position + 8
        if size == 1:
            size = struct.unpack(">Q", file.read(8))[0]
            payload += 8
        elif size == 0:
            size = end - position
        if size < payload - position:
            break
        boxes.append((kind, payload, min(position + size, end)))
        position += size
    return boxes


def _mp4_facts(file: IO[bytes]) -> Facts:
    end = file.seek(0, io.SEEK_END)
    moov = next((b for b in _boxes(file, 0, end) if b[0] == b"moov"), None)
    if moov is None:
        return Facts()
    duration = None
    width = height = 0
    for kind, start, stop in _boxes(file, moov[1], moov[2]):
        if kind == b"mvhd":
            file.seek(start)
            version = file.read(1)[0]
            file.seek(start + (20 if version == 1 else 12))
            if version == 1:
                timescale, length = struct.unpack(">IQ", file.read(12))
            else:
                timescale, length = struct.unpack(">II", file.read(8))
            duration = length / timescale if timescale else None
        elif kind == b"trak":
            for inner, inner_start, inner_stop in _boxes(file, start, stop):
                if inner == b"tkhd" and inner_stop - inner_start >= 8:
                    file.seek(inner_stop - 8)
                    track_width, track_height = struct.unpack(">II", file.read(8))
                    if track_width >> 16 and track_height >> 16:
                        width, height = track_width >> 16, track_height >> 16
    return Facts(width=width or None, height=height or None, duration=duration)


def _wav_facts(file: IO[bytes]) -> Facts:
    file.seek(12)
    byte_rate = None
    while True:
        header = file.read(8)
        if len(header) < 8:
            return Facts()
        kind, size = struct.unpack("<4sI", header)
        if kind == b"fmt ":
            fmt = file.read(size)
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
            if size % 2:
                file.read(1)
        elif kind == b"data":
            return Facts(duration=size / byte_rate if byte_rate else None)
        else:
            file.seek(size + (size % 2), io.SEEK_CUR)


def _flac_facts(file: IO[bytes]) -> Facts:
    file.seek(8)  # "fLaC" and the STREAMINFO block header
    info = file.read(18)
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    samples = packed & ((1 << 36) - 1)
    return Facts(duration=samples / rate if rate and samples else None)


def _ogg_facts(file: IO[bytes]) -> Facts:
    file.seek(0)
    first = file.read(4096)
    if b"\x01vorbis" in first:
        at = first.index(b"\x01vorbis") + 7
        rate = struct.unpack("<I", first[at + 5 : at + 9])[0]
    elif b"OpusHead" in first:
        rate = 48_000  # Opus granule positions always count 48 kHz samples
    else:
        return Facts()
    end = file.seek(0, io.SEEK_END)
    file.seek(max(0, end - 65_536))
    tail = file.read()
    last = tail.rfind(b"OggS")
    if last < 0 or last + 14 > len(tail):
        return Facts()
    granule = struct.unpack("<q", tail[last + 6 : last + 14])[0]
    return Facts(duration=granule / rate if rate and granule > 0 else None)
