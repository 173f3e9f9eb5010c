"""All models of the app, importable from ``runs.models``."""

from runs.models.audit import AuditEntry, record
from runs.models.catalog import ModelPolicy, OutputKind, Preset, RunflowModel
from runs.models.deliveries import Delivery, Outcome, Source
from runs.models.runs import (
    IN_FLIGHT,
    STATUS_RANK,
    TERMINAL,
    WITH_OUTPUTS,
    ArchiveState,
    Batch,
    BatchChunk,
    NodeRun,
    Output,
    Run,
    RunLog,
    Star,
    Status,
    normalize_status,
)
from runs.models.sharing import ShareLink
from runs.models.teams import (
    CallbackSecret,
    Invitation,
    Membership,
    Role,
    RunflowKey,
    Team,
    mask_secret,
)

__all__ = [
    "IN_FLIGHT",
    "STATUS_RANK",
    "TERMINAL",
    "WITH_OUTPUTS",
    "ArchiveState",
    "AuditEntry",
    "Batch",
    "BatchChunk",
    "CallbackSecret",
    "Delivery",
    "Invitation",
    "Membership",
    "ModelPolicy",
    "NodeRun",
    "Outcome",
    "Output",
    "OutputKind",
    "Preset",
    "Role",
    "Run",
    "RunLog",
    "RunflowKey",
    "RunflowModel",
    "ShareLink",
    "Source",
    "Star",
    "Status",
    "Team",
    "mask_secret",
    "normalize_status",
    "record",
]
