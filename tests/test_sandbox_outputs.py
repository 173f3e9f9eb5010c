"""The files sandbox runs produce are real (images, WAV, MP4), sized as asked, and expire."""

from __future__ import annotations

import base64
import io
import struct
import time
import wave
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from tests.plugins.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def finished(sandbox: Sandbox, key: str, model: str, input: dict) -> dict:
    with sandbox.api(key) as client:
        response = client.post(f"/v1/models/{model}/runs", json={"input": input})
    assert response.status_code == 201, response.text
    run = sandbox.wait_for(key, response.json()["id"], timeout=30)
    assert run["status_code"] == "succeeded", run
    return run


def boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """Top-level ISO-BMFF boxes in data[start:end]: type -> (payload start, payload end)."""
    found, position, end = {}, start, len(data) if end is None else end
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        assert size >= 8, "a box with a broken size"
        found[kind] = (position + 8, position + size)
        position += size
    assert position == end, "boxes do not tile their parent exactly"
    return found


@pytest.mark.parametrize(
    ("input", "size", "mime"),
    [
        (
            {"prompt": "a wide red banner", "aspect_ratio": "16:9", "resolution": "1K"},
            (1024, 576),
            "image/png",
        ),
        (
            {"prompt": "a tall poster", "aspect_ratio": "9:16", "output_format": "jpeg"},
            (576, 1024),
            "image/jpeg",
        ),
        (
            {"prompt": "a square stamp", "resolution": "2K", "output_format": "webp"},
            (2048, 2048),
            "image/webp",
        ),
    ],
)
def test_images_have_the_requested_size_and_format(
    sandbox: Sandbox, input: dict, size: tuple, mime: str
) -> None:
    run = finished(sandbox, sandbox.new_key(), "google/nano-banana-pro", input)
    (output,) = run["output"]["outputs"]
    response = httpx.get(output["url"])
    image = Image.open(io.BytesIO(response.content))
    assert response.headers["content-type"] == mime == output["content_type"]
    assert image.size == size == (output["width"], output["height"])
    assert output["size_bytes"] == len(response.content)


def test_the_picture_shows_the_prompts_colours(sandbox: Sandbox) -> None:
    run = finished(
        sandbox,
        sandbox.new_key(),
        "black-forest-labs/flux-2-pro",
        {"prompt": "red and blue", "width": 256, "height": 512},
    )
    image = Image.open(io.BytesIO(httpx.get(run["output"]["outputs"][0]["url"]).content)).convert(
        "RGB"
    )
    top, bottom = image.getpixel((5, 2)), image.getpixel((5, 509))
    assert top[0] > 180 and top[2] < 80  # red at the top
    assert bottom[2] > 180 and bottom[0] < 80  # blue at the bottom


def test_background_removal_is_transparent(sandbox: Sandbox) -> None:
    run = finished(
        sandbox,
        sandbox.new_key(),
        "runflow/background-removal",
        {"image_url": "https://example.com/shoe.jpg"},
    )
    image = Image.open(io.BytesIO(httpx.get(run["output"]["outputs"][0]["url"]).content))
    assert image.mode == "RGBA" and image.getpixel((0, 0))[3] == 0


def test_audio_is_a_valid_wav_of_the_asked_length(sandbox: Sandbox) -> None:
    run = finished(
        sandbox,
        sandbox.new_key(),
        "elevenlabs/sound-effects/v2",
        {"prompt": "rain on a tin roof", "duration_seconds": 1.5},
    )
    (output,) = run["output"]["outputs"]
    response = httpx.get(output["url"])
    with wave.open(io.BytesIO(response.content)) as sound:
        seconds = sound.getnframes() / sound.getframerate()
        assert sound.getnchannels() == 1 and sound.getsampwidth() == 2
    assert output["type"] == "audio" and output["content_type"] == "audio/wav"
    assert abs(seconds - 1.5) < 0.01 and output["duration"] == 1.5
    assert run["cost"] == "0.015"


def test_video_is_an_h264_mp4_of_the_asked_length(sandbox: Sandbox) -> None:
    run = finished(
        sandbox,
        sandbox.new_key(),
        "bytedance/seedance/2.0/fast/text-to-video",
        {"prompt": "waves at sunrise", "duration": "4", "aspect_ratio": "16:9"},
    )
    (output,) = run["output"]["outputs"]
    data = httpx.get(output["url"]).content
    top = boxes(data)
    assert list(top) == [b"ftyp", b"moov", b"mdat"]
    assert data[top[b"ftyp"][0] : top[b"ftyp"][0] + 4] == b"isom"
    moov = boxes(data, *top[b"moov"])
    version_and_flags = 4
    mvhd = moov[b"mvhd"][0] + version_and_flags
    timescale, duration = struct.unpack(">II", data[mvhd + 8 : mvhd + 16])
    trak = boxes(data, *moov[b"trak"])
    mdia = boxes(data, *trak[b"mdia"])
    minf = boxes(data, *mdia[b"minf"])
    stbl = boxes(data, *minf[b"stbl"])
    stsd = stbl[b"stsd"][0] + 8
    _entry_size, codec = struct.unpack(">I4s", data[stsd : stsd + 8])
    width, height = struct.unpack(">HH", data[stsd + 8 + 24 : stsd + 8 + 28])
    assert codec == b"avc1"
    assert duration / timescale == 4.0
    assert (width, height) == (848, 480) == (output["width"], output["height"])
    assert output["content_type"] == "video/mp4" and output["duration"] == 4.0
    assert run["cost"] == "0.40"
    # The chunk offset points into mdat, where the first sample is an IDR slice (NAL type 5).
    stco = stbl[b"stco"][0] + 8
    (offset,) = struct.unpack(">I", data[stco : stco + 4])
    assert top[b"mdat"][0] == offset and data[offset + 4] & 0x1F == 5


def test_image_to_video_follows_the_input_image_shape(sandbox: Sandbox) -> None:
    portrait = io.BytesIO()
    Image.new("RGB", (90, 160), (200, 40, 40)).save(portrait, "PNG")
    data_uri = "data:image/png;base64," + base64.b64encode(portrait.getvalue()).decode()
    run = finished(
        sandbox,
        sandbox.new_key(),
        "bytedance/seedance/2.0/image-to-video",
        {"image_url": data_uri, "duration": "4", "resolution": "480p"},
    )
    output = run["output"]["outputs"][0]
    assert output["type"] == "video"
    assert (output["width"], output["height"]) == (480, 848)


def test_output_urls_refuse_tampering(sandbox: Sandbox) -> None:
    run = finished(sandbox, sandbox.new_key(), "google/nano-banana-pro", {"prompt": "guard me"})
    url = run["output"]["outputs"][0]["url"]
    later = url.replace("expires=", "expires=9")
    assert httpx.get(later).status_code == 403
    assert httpx.get(url.split("?")[0]).status_code == 403
    assert httpx.get(url).status_code == 200


def test_output_urls_expire_with_403(sandbox_faults: Sandbox) -> None:
    sandbox_faults.set_faults(output_ttl=2)
    run = finished(
        sandbox_faults,
        sandbox_faults.new_key(),
        "google/nano-banana-pro",
        {"prompt": "short lived"},
    )
    url = run["output"]["outputs"][0]["url"]
    assert httpx.get(url).status_code == 200
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert expires <= time.time() + 2
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"expired" in expired.content


def test_output_urls_last_a_day_by_default(sandbox: Sandbox) -> None:
    run = finished(sandbox, sandbox.new_key(), "google/nano-banana-pro", {"prompt": "long lived"})
    expires = int(parse_qs(urlsplit(run["output"]["outputs"][0]["url"]).query)["expires"][0])
    assert 23 * 3600 < expires - time.time() <= 24 * 3600
