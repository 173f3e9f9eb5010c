from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic.base import RedirectView

# Browsers ask for /favicon.ico on pages that name no icon (the admin's) and old ones ask
# for it whatever the page says: send them to the static file, whose name is hashed in
# production, so the redirect is looked up per request rather than hard-coded.
favicon = RedirectView.as_view(url=lazy(static, str)("favicon.ico"))

urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include("runs.urls.accounts")),
    path("", include("runs.urls")),
]
