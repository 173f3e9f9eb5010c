"""A local stand-in for Runflow: the same HTTP contract (shared/RUNFLOW_API.md), offline.

It is its own program (``uv run manage.py sandbox``) with in-memory state, and it imports
nothing from the site: not the models, not ``runs.runflow``. Being an independent
implementation of the contract is the point: contract tests run the site's client against
it, so a divergence on either side shows up as a failing test instead of a production bug.

Modules: ``server`` (HTTP, routing, auth, faults on the way through), ``web`` (request,
answer, paging, filters), ``api`` and ``api_runs`` (the /v1 endpoints), ``files``
(presigned outputs, covers, uploads), ``state`` (the store and the ledger), ``lifecycle``
(runs advancing on a timer), ``scheduler`` (the timer), ``callbacks`` (signed deliveries
with retries), ``faults`` (switches for tests), ``catalog``, ``spec`` and ``validation``
(models and their inputs), ``media`` and ``mp4`` (the files runs produce).
"""
