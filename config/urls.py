"""URL configuration: the demo shop mounts the app the way any host project would."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from cartsvc import ops

# The demo's admin titles (a host keeps its own: the app leaves admin.site alone).
admin.site.site_header = "cartimage admin"
admin.site.site_title = "cartimage admin"
admin.site.index_title = "Carts, kept as a memory image"

# The shop's own error pages (self-contained: they work with DEBUG off, under any server).
handler404 = "carts.views.page_not_found"
handler500 = "carts.views.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("cartsvc.api.urls")),
    path("metrics", ops.metrics_view, name="metrics"),
    path("healthz", ops.healthz, name="healthz"),
    path("", include("carts.urls")),
]

if "bench.naivecart" in settings.INSTALLED_APPS:
    urlpatterns.append(path("bench/", include("bench.naivecart.urls")))
if "bench.oscarbasket" in settings.INSTALLED_APPS:
    urlpatterns.append(path("bench/oscar/", include("bench.oscarbasket.urls")))
