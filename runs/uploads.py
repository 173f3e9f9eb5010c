"""Files chosen on the launch form, sent through Runflow's three-step asset upload.

The file goes from the browser to us, then from us to Runflow's presigned storage
(``RunflowClient.upload_asset``); the run's input carries the asset's URL, like any other
image URL. Our key never reaches the storage host (the client strips it from the PUT).
"""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile

from runs.forms.launch import FILE_SUFFIX, LaunchForm
from runs.models import Team
from runs.runflow.errors import RunflowError


class UploadFailed(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def upload_one(team: Team, file: UploadedFile) -> str:
    """Upload one file for ``team``; the URL to put in the input."""
    from runs.connection import ConnectionUnavailable, client_for_team

    name = file.name or "upload"
    try:
        client = client_for_team(team)
    except ConnectionUnavailable as exc:
        raise UploadFailed(str(getattr(exc, "message", exc))) from exc
    try:
        with client:
            asset = client.upload_asset(
                name, file.content_type or "application/octet-stream", _read(file)
            )
    except RunflowError as error:
        raise UploadFailed(f"{name} could not be uploaded to Runflow: {error.message}") from error
    return asset.url or asset.ref


def send_uploads(team: Team, form: LaunchForm) -> None:
    """Upload every file the form holds and put the URLs in its input (and its fields).

    The URLs are written back into the bound data too: if the page is shown again (a
    confirmation step), the file is not lost, its URL is in the field.
    """
    data: Any = form.data.copy()  # type: ignore[attr-defined]  # a QueryDict
    for name, files in form.uploads.items():
        try:
            urls = [upload_one(team, file) for file in files]
        except UploadFailed as failed:
            failed.field = name + FILE_SUFFIX
            raise
        form.set_uploaded(name, urls)
        value = form.input[name]
        data[form.add_prefix(name)] = value if isinstance(value, str) else "\n".join(value)
    form.uploads = {}
    form.data = data


def _read(file: UploadedFile) -> bytes:
    file.seek(0)
    return file.read()
