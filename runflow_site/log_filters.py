"""Logging filters named in ``settings.LOGGING``."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class QuietPermissionDenied(logging.Filter):
    """A refused request (403) is expected: one warning line, without the traceback.

    Django logs ``Forbidden (Permission denied): <path>`` with the exception attached, so
    every viewer who follows a link meant for admins printed a full traceback. The line
    stays (who was refused where is worth seeing); only the traceback goes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        if isinstance(exception, PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
