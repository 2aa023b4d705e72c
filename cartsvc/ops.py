"""Operations endpoints: /metrics for Prometheus and /healthz for load balancers."""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from cartsvc import health, metrics


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The image's counters, timings and gauges in Prometheus text format 0.0.4."""
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, cache and broker, each probed now, and the event subscriptions: 200 while
    the database answers (the others' states in the body), 503 when it does not."""
    report = health.health()
    status = 200 if report["database"]["ok"] else 503
    if not _may_see_details(request):
        # Outsiders learn up or down, not which database, cache backend or broker we run.
        report = {
            name: part if name == "status" else {"ok": part["ok"], "state": part["state"]}
            for name, part in report.items()
        }
    return JsonResponse(report, status=status)


# RFC 1918 and unique-local IPv6: where load balancers and monitoring agents live.
# (ipaddress's is_private also counts documentation and benchmarking ranges.)
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def _may_see_details(request: HttpRequest) -> bool:
    """Staff, or a direct request from a loopback or private address (a load balancer, a
    monitoring agent): not one relayed by a proxy (it carries X-Forwarded-For)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return address.is_loopback or any(address in net for net in INTERNAL_NETWORKS)
