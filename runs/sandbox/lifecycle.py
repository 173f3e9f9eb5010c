"""Runs moving on a timer: queued → dispatching → running → terminal, with logs and steps.

How a run ends is chosen when it is created (``X-Sandbox-Scenario`` or a marker in a text
input): ``[fail]``, ``[partial]``, ``[cancel]``, and ``[slow]`` (which combines with the
others); success otherwise. Each step takes ``SANDBOX_STEP_SECONDS``; video models spend
more steps running, multi-step solutions one step per node.
"""

from __future__ import annotations

import math
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from PIL import Image

from runs.sandbox import media
from runs.sandbox.callbacks import Sender
from runs.sandbox.catalog import find
from runs.sandbox.config import Config
from runs.sandbox.faults import Faults
from runs.sandbox.files import Links
from runs.sandbox.scheduler import Scheduler
from runs.sandbox.serialize import batch_callback, run_callback
from runs.sandbox.spec import Spec
from runs.sandbox.state import Batch, Run, Store
from runs.sandbox.util import iso_z, now

SCENARIOS = ("fail", "partial", "cancel", "slow")
_MARKER = re.compile(r"\[(fail|partial|cancel|slow)\]", re.IGNORECASE)
_LONG_SIDE = {"0.5K": 512, "1K": 1024, "2K": 2048, "4K": 4096}
_VIDEO_SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080}


def scenario_of(header: str | None, value: Any) -> frozenset[str]:
    """The scenario words from the header (comma-separated) and from text inputs."""
    found = {w.strip().lower() for w in (header or "").split(",") if w.strip()}
    found &= set(SCENARIOS)

    def scan(item: Any) -> None:
        if isinstance(item, str):
            found.update(m.lower() for m in _MARKER.findall(item))
        elif isinstance(item, dict):
            for entry in item.values():
                scan(entry)
        elif isinstance(item, list):
            for entry in item:
                scan(entry)

    scan(value)
    return frozenset(found)


class Engine:
    def __init__(
        self,
        store: Store,
        config: Config,
        faults: Faults,
        sender: Sender,
        scheduler: Scheduler,
        links: Links,
    ) -> None:
        self.store = store
        self.config = config
        self.faults = faults
        self.sender = sender
        self.scheduler = scheduler
        self.links = links
        self.pool = ThreadPoolExecutor(config.media_workers, thread_name_prefix="sandbox-run")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- timing ----

    def _step(self, run: Run) -> float:
        return self.config.step_seconds * (self.config.slow_factor if "slow" in run.scenario else 1)

    def start(self, run: Run) -> None:
        self.scheduler.call_later(self._step(run), self.pool, self.tick, run.id)

    # ---- logs and node runs ----

    def log(self, run: Run, level: str, message: str, **meta: Any) -> None:
        run.logs.append(
            {
                "id": str(uuid.uuid4()),
                "run_id": run.id,
                "level_code": level,
                "message": message,
                "timestamp": iso_z(now()),
                "meta": meta,
            }
        )
        del run.logs[:-500]

    def _node(self, run: Run, index: int, state: str, **changes: Any) -> None:
        node = run.node_runs[index]
        node["state_code"] = state
        node.update(changes)

    # ---- the timer ----

    def tick(self, run_id: str) -> None:
        with self.store.lock:
            run = self.store.runs.get(run_id)
            if run is None or run.terminal:
                return
            spec = find(run.model_id)
            assert spec is not None
            if run.status == "queued":
                run.status = "dispatching"
                self.log(run, "info", f"Dispatching to {spec.model_id.split('/')[0]}.")
                self._batch_started(run)
            elif run.status == "dispatching":
                run.status = "running"
                run.started_at = now()
                self.log(run, "info", "Running.")
                if spec.nodes:
                    self._node(run, 0, "running", started_at=iso_z(now()))
                    self.log(
                        run,
                        "info",
                        f"Step 1 of {len(spec.nodes)}: {spec.nodes[0]}.",
                        node_id=spec.nodes[0],
                    )
            else:
                finished = self._advance(run, spec)
                if not finished:
                    self.start(run)
                return
        self.start(run)

    def _advance(self, run: Run, spec: Spec) -> bool:
        """One running step; True when the run has ended (or is ending)."""
        run.ticks += 1
        total = len(spec.nodes) or spec.running_steps
        if "cancel" in run.scenario:
            self.cancel(run, "Cancelled by the provider ([cancel] scenario).", by="provider")
            return True
        if spec.nodes:
            index = run.ticks - 1
            if "fail" in run.scenario and index == min(2, total - 1):
                self._node(
                    run,
                    index,
                    "failed",
                    error_message="Inpainting failed: the provider returned an error.",
                    completed_at=iso_z(now()),
                )
                for rest in range(index + 1, total):
                    self._node(run, rest, "skipped")
                self.pool.submit(self.finish, run.id)
                return True
            if "partial" in run.scenario and index == total - 1:
                self._node(
                    run,
                    index,
                    "failed",
                    error_message="Upscaling failed; the unscaled result is kept.",
                    completed_at=iso_z(now()),
                )
            else:
                self._node(
                    run,
                    index,
                    "succeeded",
                    completed_at=iso_z(now()),
                    duration_ms=int(self._step(run) * 1000),
                    output={"ok": True},
                    cost="0.01",
                )
                run.nodes_completed += 1
            if index + 1 < total:
                self._node(run, index + 1, "running", started_at=iso_z(now()))
                self.log(
                    run,
                    "info",
                    f"Step {index + 2} of {total}: {spec.nodes[index + 1]}.",
                    node_id=spec.nodes[index + 1],
                )
        else:
            self.log(run, "info", f"Generating: {min(100, 100 * run.ticks // total)}%.")
        if run.ticks < total:
            return False
        self.pool.submit(self.finish, run.id)
        return True

    # ---- endings ----

    def finish(self, run_id: str) -> None:
        """Make the outputs (outside the lock: it can take a moment) and end the run."""
        with self.store.lock:
            run = self.store.runs.get(run_id)
            if run is None or run.terminal:
                return
            spec = find(run.model_id)
            assert spec is not None
            outcome = (
                "failed"
                if "fail" in run.scenario
                else "partial_succeeded"
                if "partial" in run.scenario
                else "succeeded"
            )
        if outcome == "failed":
            self._end(
                run,
                "failed",
                failure=(
                    "MODEL_ERROR",
                    "inference",
                    "The provider returned an error: this sandbox run was asked to fail ([fail]).",
                ),
            )
            return
        try:
            entries, units = self._render(run, spec, partial=outcome == "partial_succeeded")
        except Exception as error:  # a broken output must end the run, not leave it running
            self._end(
                run,
                "failed",
                failure=("OUTPUT_ERROR", "postprocess", f"Could not make the output: {error}"),
            )
            raise
        legacy = self.faults.use_legacy_output()
        output: dict[str, Any]
        if legacy and spec.kind == "image":
            output = {"image_urls": [e["url"] for e in entries]}
        elif legacy:
            output = {spec.kind: {"url": entries[0]["url"]}}
        else:
            output = {
                "outputs": entries,
                "seed": abs(hash(run.id)) % 2**31,
                "nsfw_detected": False,
                "timing": {"inference_ms": int(self._step(run) * 1000 * max(1, run.ticks))},
            }
        self._end(
            run, outcome, output=output, cost=(spec.price * units).quantize(Decimal("0.0001"))
        )

    def _end(
        self,
        run: Run,
        status: str,
        *,
        output: dict[str, Any] | None = None,
        cost: Decimal | None = None,
        failure: tuple[str, str, str] | None = None,
        message: str | None = None,
    ) -> bool:
        with self.store.lock:
            if run.terminal:
                return False
            run.status = status
            run.completed_at = now()
            run.started_at = run.started_at or run.completed_at
            run.output = output
            run.cost = cost if cost is not None else Decimal("0")
            if status == "succeeded":
                run.nodes_completed = run.nodes_total
            if failure:
                run.failure_code, run.failure_stage_code, run.failure_message = failure
                self.log(run, "error", failure[2])
            elif message:
                self.log(run, "warning", message)
            else:
                self.log(
                    run,
                    "info",
                    "Finished." if status == "succeeded" else "Finished with some outputs missing.",
                )
            for node in run.node_runs:
                if node["state_code"] in ("queued", "running"):
                    node["state_code"] = "canceled" if status == "canceled" else "skipped"
            org = self.store.orgs.get(run.org_id)
            if org is not None and run.cost:
                self.store.charge(org, run.cost)
            batch = self.store.batches.get(run.batch_id) if run.batch_id else None
        if batch is not None:
            self._batch_progress(batch)
        elif run.callback_url and org is not None and not run.early_callback:
            self.sender.deliver(
                org,
                "run",
                run.id,
                run.callback_url,
                run_callback(run, extra=self.faults.extra_fields),
            )
        return True

    def cancel(self, run: Run, reason: str, *, by: str) -> bool:
        """End an in-flight run as canceled; False when it had already ended."""
        return self._end(run, "canceled", message=f"Cancelled by {by}: {reason}")

    def finish_now(self, run: Run) -> None:
        """Jump straight to the end (the 'early' callback fault); the caller sends the callback."""
        with self.store.lock:
            run.early_callback = True
            run.status = "running"
            run.started_at = now()
            for index in range(len(run.node_runs)):
                self._node(run, index, "succeeded", completed_at=iso_z(now()))
            run.nodes_completed = run.nodes_total
        self.finish(run.id)

    def prepare(self, run: Run, spec: Spec) -> None:
        """A new run's first log line and, for multi-step solutions, its queued steps."""
        run.nodes_total = len(spec.nodes) or 1
        run.node_runs = [
            {
                "id": str(uuid.uuid4()),
                "run_id": run.id,
                "node_id": name,
                "flow_id": None,
                "state_code": "queued",
                "input": None,
                "output": None,
                "duration_ms": None,
                "cost": None,
                "retry_count": 0,
                "error_message": None,
                "created_at": iso_z(run.created_at),
                "started_at": None,
                "completed_at": None,
            }
            for name in spec.nodes
        ]
        self.log(run, "info", f"Run queued for {spec.model_id}.")

    # ---- batches ----

    def _batch_started(self, run: Run) -> None:
        batch = self.store.batches.get(run.batch_id) if run.batch_id else None
        if batch is not None and batch.status == "queued":
            batch.status = "running"
            batch.started_at = now()

    def _batch_progress(self, batch: Batch) -> None:
        with self.store.lock:
            runs = [self.store.runs[r] for r in batch.run_ids if r in self.store.runs]
            if batch.terminal or not all(r.terminal for r in runs):
                return
            statuses = {r.status for r in runs}
            if statuses <= {"succeeded"}:
                batch.status = "succeeded"
            elif statuses == {"failed"}:
                batch.status = "failed"
            elif statuses == {"canceled"}:
                batch.status = "canceled"
            elif statuses & {"succeeded", "partial_succeeded"}:
                batch.status = "partial_succeeded"
            else:
                batch.status = "failed"
            batch.completed_at = now()
            org = self.store.orgs.get(batch.org_id)
            payload = batch_callback(batch, self.store, extra=self.faults.extra_fields)
        if batch.callback_url and org is not None:
            self.sender.deliver(org, "batch", batch.id, batch.callback_url, payload)

    # ---- outputs ----

    def _render(
        self, run: Run, spec: Spec, *, partial: bool
    ) -> tuple[list[dict[str, Any]], Decimal]:
        values = {item["name"]: item.get("default_value") for item in spec.inputs}
        values.update({k: v for k, v in run.input.items() if v is not None})
        prompt = str(values.get("prompt") or spec.name)
        colours = media.palette(prompt, values.get("colors"))
        base = self._base_image(run, values)
        caption = f"{spec.model_id} · sandbox"
        if spec.kind == "video":
            duration = values.get("duration")
            seconds = 5.0 if duration in (None, "auto") else float(str(duration))
            # Image-to-video keeps the shape of its first frame when the sandbox can see it.
            ratio = values.get("aspect_ratio") or ("auto" if base is not None else "16:9")
            width, height = _video_size(values.get("resolution") or "480p", ratio, base)
            data = media.clip(width, height, seconds, prompt, colours, caption, base)
            entry = self._store(
                run, data, "video/mp4", "mp4", "video", width // 16 * 16, height // 16 * 16, seconds
            )
            return [entry], Decimal(str(seconds))
        if spec.kind == "audio":
            seconds = float(values.get("duration_seconds") or 3.0)
            entry = self._store(
                run, media.tone(seconds, prompt), "audio/wav", "wav", "audio", None, None, seconds
            )
            return [entry], Decimal(str(seconds))
        count = int(values.get("num_images") or 1)
        if spec.transform == "remove":
            count = 2  # the cleaned image and its mask
        delivered = max(1, math.ceil(count / 2)) if partial else count
        width, height = _image_size(values, base)
        entries = []
        megapixels = Decimal(0)
        for index in range(delivered):
            label = f"{caption} · {index + 1}/{count}" if count > 1 else caption
            image = media.picture(width, height, prompt, colours, label, base)
            if spec.transform == "cutout":
                image = media.cutout(image)
            if spec.transform == "remove" and index == 1:
                image = media.cutout(Image.new("RGB", (width, height), (255, 255, 255)))
            data, content_type, extension = media.encode_image(
                image, str(values.get("output_format") or "png")
            )
            entries.append(
                self._store(run, data, content_type, extension, "image", width, height, None)
            )
            megapixels += Decimal(width * height) / Decimal(1_000_000)
        if spec.unit == "request":
            units = Decimal(1)
        elif spec.unit == "megapixel":
            units = megapixels.quantize(Decimal("0.01"))
        else:
            units = Decimal(delivered)
        return entries, units

    def _store(
        self,
        run: Run,
        data: bytes,
        content_type: str,
        extension: str,
        kind: str,
        width: int | None,
        height: int | None,
        seconds: float | None,
    ) -> dict[str, Any]:
        entry = self.store.add_file(run, data, content_type, extension)
        return {
            "type": kind,
            "url": self.links.output_url(entry, self.faults.output_ttl),
            "width": width,
            "height": height,
            "duration": seconds,
            "content_type": content_type,
            "size_bytes": len(data),
        }

    def _base_image(self, run: Run, values: dict[str, Any]) -> Image.Image | None:
        for name in ("image_url", "image_urls"):
            value = values.get(name)
            url = value[0] if isinstance(value, list) and value else value
            if isinstance(url, str):
                return self.links.load_image(url, run.org_id)
        return None


def _image_size(values: dict[str, Any], base: Image.Image | None) -> tuple[int, int]:
    if values.get("width") and values.get("height"):
        return int(values["width"]), int(values["height"])
    if values.get("upscale_factor"):
        width, height = base.size if base else (512, 512)
        factor = int(values["upscale_factor"])
        scale = min(factor, 4096 / max(width, height))
        return max(16, int(width * scale)), max(16, int(height * scale))
    long_side = _LONG_SIDE.get(str(values.get("resolution") or "1K"), 1024)
    ratio = str(values.get("aspect_ratio") or "")
    if ":" not in ratio and base is not None:
        width, height = base.size
    elif ":" in ratio:
        width, height = (int(n) for n in ratio.split(":", 1))
    else:
        width, height = 1, 1
    if width >= height:
        return long_side, max(16, round(long_side * height / width / 8) * 8)
    return max(16, round(long_side * width / height / 8) * 8), long_side


def _video_size(resolution: str, ratio: str, base: Image.Image | None) -> tuple[int, int]:
    short = _VIDEO_SHORT_SIDE.get(resolution, 480)
    if ":" in ratio:
        width, height = (int(n) for n in ratio.split(":", 1))
    elif base is not None:
        width, height = base.size
    else:
        width, height = 16, 9
    if width >= height:
        return round(short * width / height / 16) * 16, short
    return short, round(short * height / width / 16) * 16
