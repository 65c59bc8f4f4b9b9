"""/metrics on the web port, for Prometheus: from the allowed networks, or with the bearer token.

    [metrics]
    allow = ["127.0.0.1/32", "::1/128", "10.0.5.0/24"]   # the monitoring server's network
    token = "..."                                        # or: Authorization: Bearer <token>

Every request is also counted here, by its view's endpoint name (never its path: a path can carry a
ticket code) and status: park_http_requests_total, park_http_request_seconds.
"""

from __future__ import annotations

import hmac
import ipaddress
import time

from flask import Flask, Response, current_app, g, request

from central import metrics
from central.i18n import _
from central.web.stack import current_context


def _allowed(config) -> bool:
    token = config.metrics.token
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    try:
        client = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(net, strict=False) for net in config.metrics.allow)


def init_app(app: Flask) -> None:
    @app.get("/metrics")
    def prometheus_metrics():
        context = current_context()
        if not _allowed(current_app.config["CENTRAL_CONFIG"]):
            return Response(_("Metrics are read from the allowed networks or with the metrics token "
                              "([metrics] in central.toml)."), 403, mimetype="text/plain")
        body, content_type = metrics.render(context.sessions)
        return Response(body, 200, content_type=content_type)

    @app.before_request
    def _started():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response):
        started = g.pop("metrics_started", None)
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "unmatched"
        metrics.HTTP_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        if started is not None:
            metrics.HTTP_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response


__all__ = ["init_app"]
