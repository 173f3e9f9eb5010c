"""Re-encrypt every encrypted value under the first FIELD_ENCRYPTION_KEYS entry (S3).

The procedure: put the new key first (``[K2, K1]``), run ``manage.py rotate_keys``, then
drop the old key (``[K2]``). Rows are found through the models (every ``EncryptedTextField``
of every installed model), read and written in batches by primary key, and each write is a
compare-and-set on the old ciphertext, so a value re-entered meanwhile is never overwritten.
Running it again rewrites nothing (a value the first key already opens is left alone), and a
run that stops half-way simply continues the next time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.db import models

from runs.fields import DecryptionError, EncryptedSecret, EncryptedTextField, rotate


@dataclass
class Unreadable:
    model: str
    pk: object
    description: str


@dataclass
class RotationReport:
    rotated: int = 0
    current: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    marked: int = 0

    @property
    def total(self) -> int:
        return self.rotated + self.current + len(self.unreadable)


def encrypted_fields() -> Iterator[tuple[type[models.Model], EncryptedTextField]]:
    for model in apps.get_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                yield model, model_field


def rotate_all(*, batch_size: int = 200, dry_run: bool = False) -> RotationReport:
    """Rotate every encrypted value; unreadable rows are reported and marked ``needs_reentry``."""
    primary = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode())
    report = RotationReport()
    for model, model_field in encrypted_fields():
        _rotate_field(model, model_field, primary, report, batch_size, dry_run)
    return report


def _rotate_field(
    model: type[models.Model],
    model_field: EncryptedTextField,
    primary: Fernet,
    report: RotationReport,
    batch_size: int,
    dry_run: bool,
) -> None:
    name = model_field.attname
    can_mark = any(f.name == "needs_reentry" for f in model._meta.concrete_fields)
    last_pk = None
    while True:
        rows = model._default_manager.exclude(**{f"{name}__isnull": True}).order_by("pk")
        if last_pk is not None:
            rows = rows.filter(pk__gt=last_pk)
        batch = list(rows.values_list("pk", name)[:batch_size])
        if not batch:
            return
        last_pk = batch[-1][0]
        for pk, value in batch:
            token = value.token if isinstance(value, EncryptedSecret) else str(value)
            if _opens(primary, token):
                report.current += 1
                continue
            try:
                new_token = rotate(token)
            except DecryptionError:
                report.unreadable.append(Unreadable(model._meta.label, pk, _describe(model, pk)))
                if can_mark and not dry_run:
                    report.marked += model._default_manager.filter(
                        pk=pk, needs_reentry=False
                    ).update(needs_reentry=True)
                continue
            if not dry_run:
                model._default_manager.filter(pk=pk, **{name: EncryptedSecret(token)}).update(
                    **{name: EncryptedSecret(new_token)}
                )
            report.rotated += 1


def _opens(primary: Fernet, token: str) -> bool:
    try:
        primary.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def _describe(model: type[models.Model], pk: object) -> str:
    # Masked and labelled: enough for an operator to find the row, nothing secret.
    obj = model._default_manager.filter(pk=pk).first()
    if obj is None:
        return f"{model._meta.label} #{pk}"
    team = getattr(obj, "team", None)
    return f"{model._meta.label} #{pk}: {obj}" + (f" (team {team})" if team else "")
