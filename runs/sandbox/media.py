"""The files sandbox runs produce: pictures that show their prompt, a tone, a clip.

Outputs must be real files (the site copies, measures, thumbnails and plays them), and a
person looking at the demo should see that an image belongs to its prompt: the prompt is
written on it, over colours taken from the prompt's colour words or the model's palette
input.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import textwrap
import wave
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from runs.sandbox.mp4 import make_video

RGB = tuple[int, int, int]

COLOUR_WORDS: dict[str, RGB] = {
    "red": (214, 48, 49),
    "orange": (243, 140, 36),
    "yellow": (247, 201, 36),
    "gold": (212, 175, 55),
    "green": (46, 160, 67),
    "teal": (0, 128, 128),
    "turquoise": (38, 198, 190),
    "blue": (41, 98, 214),
    "navy": (20, 33, 86),
    "purple": (128, 66, 196),
    "violet": (143, 92, 224),
    "pink": (236, 112, 170),
    "brown": (121, 85, 61),
    "black": (24, 24, 28),
    "white": (240, 240, 236),
    "grey": (128, 128, 132),
    "gray": (128, 128, 132),
    "silver": (192, 192, 200),
    "sunrise": (255, 170, 90),
    "sunset": (235, 110, 70),
    "ocean": (20, 110, 170),
    "forest": (34, 100, 50),
    "marble": (232, 230, 226),
}

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


def palette(prompt: str, colors: Any = None) -> list[RGB]:
    """Colours for a picture: an explicit palette, else colour words, else from a hash."""
    found: list[RGB] = []
    if isinstance(colors, list):
        for entry in colors:
            if isinstance(entry, dict):
                try:
                    found.append(tuple(max(0, min(255, int(entry[k]))) for k in "rgb"))  # type: ignore[arg-type]
                except (KeyError, TypeError, ValueError):
                    continue
    for word in prompt.lower().replace(",", " ").replace(".", " ").split():
        if word in COLOUR_WORDS and COLOUR_WORDS[word] not in found:
            found.append(COLOUR_WORDS[word])
    digest = hashlib.sha256(prompt.encode()).digest()
    while len(found) < 2:
        offset = 3 * len(found)
        found.append((digest[offset], digest[offset + 1], digest[offset + 2]))
    return found


def _ink(background: RGB) -> RGB:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (20, 20, 24) if luminance > 150 else (248, 248, 244)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def picture(
    width: int,
    height: int,
    prompt: str,
    colours: list[RGB],
    caption: str,
    base: Image.Image | None = None,
) -> Image.Image:
    """A gradient (or the input image, dimmed) with the prompt written across it."""
    top, bottom = colours[0], colours[1]
    if base is not None:
        image = base.convert("RGB").resize((width, height))
        image = Image.blend(image, Image.new("RGB", (width, height), top), 0.35)
    else:
        column = Image.new("RGB", (1, 256))
        for y in range(256):
            t = y / 255
            column.putpixel(
                (0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            )
        image = column.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for index, colour in enumerate(colours[2:6]):
        radius = min(width, height) // 10
        cx = width * (index + 1) // 6
        draw.ellipse((cx - radius, height // 8, cx + radius, height // 8 + 2 * radius), fill=colour)
    size = max(12, min(width, height) // 14)
    font = _font(size)
    chars = max(8, int(width * 0.8 / (size * 0.55)))
    lines = textwrap.wrap(prompt, chars)[:6] or [""]
    line_height = int(size * 1.3)
    y = (height - line_height * len(lines)) // 2
    ink = _ink(image.getpixel((width // 2, height // 2)))  # type: ignore[arg-type]
    for line in lines:
        draw.text((width // 2, y), line, fill=ink, font=font, anchor="ma")
        y += line_height
    small = _font(max(10, size // 2))
    draw.text((width // 2, height - size), caption, fill=ink, font=small, anchor="ma")
    return image


def encode_image(image: Image.Image, output_format: str) -> tuple[bytes, str, str]:
    """(bytes, content type, extension) for ``png``, ``jpeg`` or ``webp``."""
    pil_format, content_type = FORMATS.get(output_format, FORMATS["png"])
    if pil_format == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    # Fast PNG compression: runs finish in a fraction of a second in tests.
    options: dict[str, Any] = (
        {"quality": 85} if pil_format in ("JPEG", "WEBP") else {"compress_level": 1}
    )
    image.save(buffer, pil_format, **options)
    extension = "jpg" if pil_format == "JPEG" else pil_format.lower()
    return buffer.getvalue(), content_type, extension


def cutout(image: Image.Image) -> Image.Image:
    """A 'background removed' look: an oval subject on transparency."""
    mask = Image.new("L", image.size, 0)
    width, height = image.size
    ImageDraw.Draw(mask).ellipse(
        (width // 6, height // 10, width * 5 // 6, height * 9 // 10), fill=255
    )
    result = image.convert("RGBA")
    result.putalpha(mask)
    return result


def tone(seconds: float, prompt: str, rate: int = 22050) -> bytes:
    """A valid 16-bit mono WAV: a chirp whose pitch comes from the prompt."""
    digest = hashlib.sha256(prompt.encode()).digest()
    base = 220 + digest[0] * 2
    frames = max(1, int(seconds * rate))
    samples = bytearray()
    for n in range(frames):
        t = n / rate
        envelope = min(1.0, t * 20, (seconds - t) * 20)
        value = math.sin(2 * math.pi * (base + 60 * math.sin(2 * math.pi * 0.5 * t)) * t)
        samples += struct.pack("<h", int(12000 * envelope * value))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(samples))
    return buffer.getvalue()


def clip(
    width: int,
    height: int,
    seconds: float,
    prompt: str,
    colours: list[RGB],
    caption: str,
    base: Image.Image | None = None,
) -> bytes:
    """An MP4 showing the prompt while a progress bar fills along the bottom."""
    still = picture(width, height, prompt, colours, caption, base)
    return make_video(still, seconds, bar=_ink(colours[1]))


def open_image(data: bytes) -> Image.Image | None:
    """An uploaded image, or None when the bytes are not one Pillow can read safely."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > 40_000_000:
            return None
        image.load()
        return image
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
