"""ASGI entry point, for servers that prefer it; the site itself is synchronous."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runflow_site.settings")

application = get_asgi_application()
