"""The sandbox's model catalog: about ten models shaped like Runflow's real ones.

Each model carries ModelInput definitions as Runflow describes them (``variable_type_code``,
``validator_attrs`` with ``choices``/``min``/``max``/``max_length``/``max_items`` ...), a
price label, a category, examples and a cover image the sandbox draws itself.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from runs.sandbox.spec import Spec, field_, output_

ASPECT_RATIOS = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]
VIDEO_RATIOS = ["auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16"]
DURATIONS = ["auto", *[str(n) for n in range(4, 16)]]


_PROMPT = field_(
    "prompt",
    "string",
    "What to generate, in plain words. Put [fail], [partial], [cancel] or [slow] in it to "
    "choose how the sandbox run ends.",
    required=True,
    featured=True,
    min_length=3,
    max_length=50000,
)
_OUTPUT_FORMAT = field_(
    "output_format",
    "string",
    "File format of the images.",
    default="png",
    choices=["png", "jpeg", "webp"],
)
_RESOLUTION = field_(
    "resolution",
    "string",
    "Size class of the longer side: 1K ≈ 1024 px, 2K ≈ 2048, 4K ≈ 4096.",
    default="1K",
    choices=["1K", "2K", "4K"],
)
_NUM_IMAGES = field_(
    "num_images",
    "integer",
    "How many images to make in one run.",
    display="Number of images",
    default=1,
    min=1,
    max=4,
)
_DURATION = field_("duration", "string", "Clip length in seconds.", default="5", choices=DURATIONS)
_IMAGES_OUT = [output_("images", "image_list", "The generated images.")]
_VIDEO_OUT = [output_("video", "video", "The generated clip (MP4).")]


def _model(
    *,
    price: str,
    kind: str = "image",
    outputs: list[dict[str, Any]] = _IMAGES_OUT,
    **spec: Any,
) -> Spec:
    """A catalog entry: a ``Spec`` priced by its label, as Runflow writes it ("$0.15 per image").

    The amount and the unit the sandbox bills by are read from the label, so the two can't
    disagree. Most models make images, so ``kind`` and ``outputs`` default to that.
    """
    amount, _, unit = price.removeprefix("$").partition(" per ")
    return Spec(
        price=Decimal(amount),
        unit=unit,
        price_label=price,
        kind=kind,
        outputs=outputs,
        **spec,
    )


def _image_url(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return field_(
        name,
        "image",
        description,
        required=required,
        featured=required,
        display=name.replace("_url", "").replace("_", " ").capitalize(),
    )


MODELS: list[Spec] = [
    _model(
        model_id="google/nano-banana-pro",
        name="Nano Banana Pro",
        description="Google's highest-quality image model: sharp text rendering, faithful "
        "composition and up to 4K output from a text prompt.",
        category="text-to-image",
        price="$0.15 per image",
        supports_batch=True,
        features=("Legible text in images", "Up to 4K", "Web-grounded generation"),
        inputs=[
            _PROMPT,
            field_(
                "aspect_ratio",
                "string",
                "Width to height of the image.",
                default="1:1",
                choices=ASPECT_RATIOS,
            ),
            _RESOLUTION,
            _NUM_IMAGES,
            _OUTPUT_FORMAT,
            field_(
                "enable_web_search",
                "boolean",
                "Ground the image in web search results.",
                default=False,
            ),
            field_(
                "safety_tolerance",
                "string",
                "1 is the strictest filter, 6 the most permissive.",
                default="4",
                choices=["1", "2", "3", "4", "5", "6"],
            ),
        ],
        examples=[
            {
                "title": "Product on marble",
                "input": {
                    "prompt": "A glass perfume bottle on white marble, soft morning light",
                    "aspect_ratio": "4:5",
                },
            },
            {
                "title": "Poster with text",
                "input": {
                    "prompt": "A retro travel poster that says 'LISBON' in bold orange letters",
                    "resolution": "2K",
                },
            },
        ],
    ),
    _model(
        model_id="google/nano-banana-pro/edit",
        name="Nano Banana Pro Edit",
        description="Edit one or more images with an instruction: remove objects, change "
        "colours, combine references.",
        category="image-to-image",
        price="$0.15 per image",
        transform="edit",
        inputs=[
            {**_PROMPT, "description": "The edit to make, e.g. 'remove the price tag'."},
            field_(
                "image_urls",
                "image_list",
                "Images to edit or use as references (URLs).",
                display="Images",
                required=True,
                featured=True,
                max_items=14,
            ),
            _RESOLUTION,
            _NUM_IMAGES,
            _OUTPUT_FORMAT,
        ],
        examples=[
            {
                "title": "Remove a tag",
                "input": {
                    "prompt": "remove the price tag",
                    "image_urls": ["https://example.com/shoe.png"],
                },
            }
        ],
    ),
    _model(
        model_id="black-forest-labs/flux-2-pro",
        name="FLUX.2 [pro]",
        description="Black Forest Labs' flagship text-to-image model with precise prompt "
        "following and exact sizes.",
        category="text-to-image",
        price="$0.04 per image",
        supports_batch=True,
        features=("Exact pixel sizes", "Seeded, repeatable results"),
        inputs=[
            _PROMPT,
            field_(
                "width",
                "integer",
                "Width in pixels (a multiple of 16 is best).",
                default=1024,
                min=256,
                max=2048,
            ),
            field_("height", "integer", "Height in pixels.", default=1024, min=256, max=2048),
            field_(
                "seed",
                "integer",
                "Same seed and prompt give the same image.",
                min=0,
                max=2147483647,
            ),
            field_(
                "guidance",
                "number",
                "How closely to follow the prompt.",
                default=3.5,
                min=1.5,
                max=10,
            ),
            field_(
                "prompt_upsampling",
                "boolean",
                "Let the model enrich a short prompt.",
                default=False,
            ),
            field_(
                "safety_tolerance",
                "integer",
                "1 is the strictest, 6 the most permissive.",
                default=2,
                min=1,
                max=6,
            ),
            _OUTPUT_FORMAT,
        ],
        examples=[
            {
                "title": "Studio portrait",
                "input": {
                    "prompt": "A studio portrait of a border collie wearing a yellow raincoat",
                    "width": 1024,
                    "height": 1280,
                },
            }
        ],
    ),
    _model(
        model_id="recraft/v3",
        name="Recraft V3",
        description="Design-oriented images and illustrations in a chosen style and brand palette.",
        category="text-to-image",
        price="$0.04 per image",
        supports_batch=True,
        inputs=[
            _PROMPT,
            field_(
                "style",
                "string",
                "Visual style.",
                default="realistic_image",
                choices=["realistic_image", "digital_illustration", "vector_illustration", "icon"],
            ),
            field_(
                "aspect_ratio", "string", "Width to height.", default="1:1", choices=ASPECT_RATIOS
            ),
            _RESOLUTION,
            _NUM_IMAGES,
            field_("guidance_scale", "number", "Prompt adherence.", default=7.5, min=1, max=20),
            field_("enable_safety_checker", "boolean", "Filter unsafe images.", default=True),
            field_(
                "colors",
                "json",
                'Brand palette, e.g. [{"r": 255, "g": 99, "b": 71}].',
                display="Palette",
                validator="json",
                max_items=5,
            ),
        ],
        examples=[
            {
                "title": "Flat icon",
                "input": {
                    "prompt": "a paper plane icon",
                    "style": "icon",
                    "colors": [{"r": 30, "g": 90, "b": 200}],
                },
            }
        ],
    ),
    _model(
        model_id="bytedance/seedance/2.0/fast/text-to-video",
        name="Seedance 2.0 Fast (text to video)",
        description="ByteDance's fast video model: short cinematic clips from a prompt, with "
        "optional generated audio.",
        category="text-to-video",
        kind="video",
        price="$0.10 per second",
        running_steps=3,
        inputs=[
            _PROMPT,
            field_("aspect_ratio", "string", "Frame shape.", default="16:9", choices=VIDEO_RATIOS),
            _DURATION,
            field_(
                "resolution",
                "string",
                "Output resolution.",
                default="480p",
                choices=["480p", "720p"],
            ),
            field_("generate_audio", "boolean", "Add a generated soundtrack.", default=False),
        ],
        outputs=_VIDEO_OUT,
        examples=[
            {
                "title": "Drone over waves",
                "input": {
                    "prompt": "A drone shot over turquoise waves at sunrise",
                    "duration": "5",
                },
            }
        ],
    ),
    _model(
        model_id="bytedance/seedance/2.0/image-to-video",
        name="Seedance 2.0 (image to video)",
        description="Animate a still image into a short clip, optionally ending on a second image.",
        category="image-to-video",
        kind="video",
        price="$0.25 per second",
        running_steps=4,
        inputs=[
            _image_url("image_url", "First frame: JPEG, PNG or WebP up to 30 MB."),
            {
                **_PROMPT,
                "is_required": False,
                "is_featured": False,
                "description": "Optional: how the scene should move.",
                "validator_attrs": {"max_length": 50000},
            },
            _image_url("end_image_url", "Optional last frame.", required=False),
            _DURATION,
            field_(
                "resolution",
                "string",
                "Output resolution.",
                default="720p",
                choices=["480p", "720p", "1080p"],
            ),
        ],
        outputs=_VIDEO_OUT,
    ),
    _model(
        model_id="elevenlabs/sound-effects/v2",
        name="ElevenLabs Sound Effects",
        description="Sound effects and short ambiences from a text description.",
        category="text-to-audio",
        kind="audio",
        price="$0.01 per second",
        inputs=[
            {**_PROMPT, "description": "The sound, e.g. 'rain on a tin roof'."},
            field_(
                "duration_seconds", "number", "Length in seconds.", default=3.0, min=0.5, max=22
            ),
            field_(
                "prompt_influence",
                "number",
                "How literally to follow the prompt.",
                default=0.3,
                min=0,
                max=1,
            ),
            field_("loop", "boolean", "Make the sound loop seamlessly.", default=False),
        ],
        outputs=[output_("audio", "audio", "The sound (WAV).")],
    ),
    _model(
        model_id="runflow/object-removal/prompt",
        name="Object Removal by Prompt",
        description="A Runflow solution: finds what you name, masks it, fills the hole and "
        "upscales the result, as four steps you can follow.",
        category="image-editing",
        price="$0.08 per request",
        transform="remove",
        nodes=("detect", "mask", "inpaint", "upscale"),
        inputs=[
            _image_url("image_url", "The photo to clean up."),
            {**_PROMPT, "description": "What to remove, e.g. 'the price tag'."},
            field_(
                "config",
                "json",
                'Advanced settings, e.g. {"mask_dilation": 8}.',
                display="Settings",
                validator="json",
            ),
            _OUTPUT_FORMAT,
        ],
        outputs=[output_("image_urls", "image_list", "The cleaned image and the mask.")],
    ),
    _model(
        model_id="runflow/background-removal",
        name="Background Removal",
        description="Cut the subject out on a transparent background. Made for catalogues: "
        "send up to 100 images in one batch.",
        category="image-editing",
        price="$0.02 per image",
        transform="cutout",
        supports_batch=True,
        inputs=[
            _image_url("image_url", "The photo to cut out."),
            field_(
                "output_format",
                "string",
                "PNG or WebP keep transparency.",
                default="png",
                choices=["png", "webp"],
            ),
        ],
        outputs=[output_("image", "image", "The cut-out subject.")],
    ),
    _model(
        model_id="topaz/upscale/image",
        name="Topaz Image Upscale",
        description="Upscale a photo 2x or 4x with detail recovery and optional face enhancement.",
        category="upscaling",
        price="$0.05 per megapixel",
        transform="upscale",
        inputs=[
            _image_url("image_url", "The image to upscale."),
            field_(
                "upscale_factor", "integer", "How many times larger.", default=2, choices=[2, 4]
            ),
            field_("face_enhancement", "boolean", "Restore faces.", default=True),
            field_(
                "creativity", "number", "How much new detail to invent.", default=0.2, min=0, max=1
            ),
        ],
        outputs=[output_("image", "image", "The upscaled image.")],
    ),
    _model(
        model_id="black-forest-labs/flux-1.1-pro",
        name="FLUX1.1 [pro] (retired)",
        description="The previous FLUX generation, kept in the catalog but no longer "
        "accepting runs: use FLUX.2 [pro].",
        category="text-to-image",
        price="$0.04 per image",
        available=False,
        inputs=[_PROMPT],
    ),
]

BY_ID: dict[str, Spec] = {spec.model_id: spec for spec in MODELS}
BY_SLUG: dict[str, Spec] = {spec.slug: spec for spec in MODELS}


def find(model_id: str) -> Spec | None:
    return BY_ID.get(model_id.strip("/"))
