"""Background work as django.tasks, one module per area.

Every task is small and idempotent: it can run twice, or after a crash, without harm. Tasks
take primary keys, never model instances, and re-read the row they act on.
"""
