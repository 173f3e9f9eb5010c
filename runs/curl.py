"""“Copy as curl”: the request a launch makes, as a command anyone can paste in a shell.

The key is always the shell variable ``$RUNFLOW_API_KEY``, never the team's real key (S4),
and every piece that came from a user or from Runflow is shell-quoted, so a prompt holding
quotes, ``$(…)`` or newlines stays a harmless string.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from django.conf import settings

KEY_VARIABLE = "$RUNFLOW_API_KEY"


def curl_command(model_id: str, input: Mapping[str, Any], *, api_url: str | None = None) -> str:
    """A ``curl`` that creates a run of ``model_id`` with ``input`` on ``api_url``."""
    base = (api_url or settings.RUNFLOW_API_URL).rstrip("/").removesuffix("/v1")
    url = f"{base}/v1/models/{quote(model_id, safe='/')}/runs"
    body = json.dumps({"input": dict(input)}, indent=2, ensure_ascii=False, sort_keys=False)
    return "\n".join(
        [
            f"curl -X POST {shlex.quote(url)} \\",
            # Double quotes on purpose: the shell expands the variable, nothing else is in it.
            f'  -H "Authorization: Bearer {KEY_VARIABLE}" \\',
            "  -H 'Content-Type: application/json' \\",
            f"  --data-raw {shlex.quote(body)}",
        ]
    )


def curl_for_run(run: Any) -> str:
    """The curl of an existing run (a ``runs.models.Run``): same model, input and endpoint."""
    input = run.input if isinstance(run.input, Mapping) else {}
    return curl_command(run.model_id, input, api_url=run.api_url or None)
