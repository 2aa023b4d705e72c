"""Operations endpoints: /metrics for Prometheus and /healthz for load balancers."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from cartsvc import metrics, service


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The image's counters, timings and gauges in Prometheus text format 0.0.4."""
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, cache and broker, each probed now: 200 while the database answers (the
    others' states in the body), 503 when it does not."""
    report = service.health()
    return JsonResponse(report, status=200 if report["database"]["ok"] else 503)
