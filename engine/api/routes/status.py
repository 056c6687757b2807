"""``/health`` and ``/metrics`` (and the same under ``/api/v1``): what monitoring reads.

The unversioned paths are what load balancers and Prometheus were pointed at before the API existed; they
stay. Both are open when no token is configured, else any role may read them. Neither carries patient data:
health names connectors and jobs (reasons scrubbed of paths), metrics are counts by connector and rule.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from engine.api.deps import context, status_access

router = APIRouter(tags=["status"], dependencies=[Depends(status_access)])

_HEALTH = {"description": "ok (200) or degraded (503), with store, connector and job state",
           "content": {"application/json": {}}}
_METRICS = {"description": "Prometheus text exposition", "content": {CONTENT_TYPE_LATEST: {}}}


def health(request: Request) -> Response:
    report: dict[str, Any] = context(request).health()
    code = 200 if report.get("status") == "ok" else 503
    return Response(orjson.dumps(report, default=str), status_code=code, media_type="application/json")


def metrics(request: Request) -> Response:
    return Response(context(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


for prefix, in_schema in (("", False), ("/api/v1", True)):
    router.add_api_route(f"{prefix}/health", health, methods=["GET"], summary="Service health",
                         responses={200: _HEALTH, 503: _HEALTH}, include_in_schema=in_schema,
                         response_class=Response)
    router.add_api_route(f"{prefix}/metrics", metrics, methods=["GET"], summary="Prometheus metrics",
                         responses={200: _METRICS}, include_in_schema=in_schema, response_class=Response)
