"""The AWS deployment in one process, for the browser tests: CloudFront as a local HTTP shim.

:class:`CloudFrontShim` serves what CloudFront would: ``/api/*`` through the API function
(``codecdash.aws_lambda.handler``, with API Gateway HTTP API events, payload 2.0, GET only,
one request at a time as one Lambda container), everything else from the site bucket as
``codecdash deploy`` uploaded it, with the response-headers policy's security headers. The
bucket, the table and the read replica are moto's (tests/aws_fixtures.py).

:class:`AwsDashboard` writes as the deployment is written: items into the DynamoDB table,
carried into the read replica by the stream function.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from aws_fixtures import SITE, TABLE
from codecdash import aws_lambda
from codecdash.api.guard import CSP
from codecdash.deploy.stack import aws_site_files
from codecdash.models import ExperimentIn
from codecdash.sources.aws.replica_writer import anchor_item, experiment_item

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def http_event(method: str, path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    """The API Gateway HTTP API event (payload 2.0) of one request."""
    lowered = {k.lower(): v for k, v in headers.items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "GET /{proxy+}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {**lowered, "x-forwarded-proto": "https", "x-forwarded-for": "127.0.0.1"},
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": lowered.get("user-agent", ""),
            },
            "routeKey": "GET /{proxy+}",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    return event


class CloudFrontShim:
    """A local CloudFront in front of the deployment (see the module's docstring)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.on_request: Callable[[str], None] | None = None  # told each request's path
        # One Lambda container: one request at a time, in one thread with its event loop.
        self.container = ThreadPoolExecutor(
            max_workers=1, initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop())
        )
        shim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                shim.serve(self, "GET")

            def do_HEAD(self) -> None:
                shim.serve(self, "HEAD")

            def do_POST(self) -> None:
                shim.serve(self, "POST")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, request: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if self.on_request is not None:  # what reaches CloudFront (not the browser's cache)
            self.on_request(request.path)
        parts = urlsplit(request.path)
        # /api/v1/dashboard is the object the schedule writes (the template's behaviour).
        if parts.path.startswith("/api/") and parts.path != "/api/v1/dashboard":
            if method not in ("GET", "HEAD"):  # API Gateway routes GET only
                self.reply(
                    request, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}'
                )
                return
            event = http_event(method, parts.path, parts.query, dict(request.headers))
            answer = self.container.submit(aws_lambda.handler, event, None).result(60)
            body = answer.get("body") or ""
            raw = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
            self.reply(request, int(answer["statusCode"]), answer.get("headers", {}), raw)
            return
        key = parts.path.lstrip("/") or "index.html"
        try:
            found = self.s3.get_object(Bucket=SITE, Key=key)
        except self.s3.exceptions.NoSuchKey:
            self.reply(request, 404, {"content-type": "text/plain"}, b"Not Found")
            return
        headers = {
            "content-type": found["ContentType"],
            "cache-control": found.get("CacheControl", ""),
            "etag": found["ETag"],
            **SECURITY_HEADERS,
        }
        self.reply(request, 200, headers, found["Body"].read(), head=method == "HEAD")

    @staticmethod
    def reply(
        request: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        head: bool = False,
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                request.send_header(name, value)
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        if not head:
            request.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        self.container.shutdown(wait=True)


@dataclass
class AwsDashboard:
    """The deployment behind a local CloudFront; writes go into the table, and the stream
    function (here: a rebuild, or the given records) carries them into the replica.
    `api` reads through CloudFront, as the page does (the API is read-only)."""

    shim: CloudFrontShim
    dynamodb: Any
    api: httpx.Client

    @property
    def url(self) -> str:
        return self.shim.url

    def put_experiments(self, items: list[dict[str, Any]]) -> None:
        for values in items:
            item = ExperimentIn.model_validate(values)
            self.dynamodb.put_item(TableName=TABLE, Item=experiment_item(item, str(item.id)))

    def put_anchor(self, name: str, description: str | None, points: list[dict[str, Any]]) -> None:
        self.dynamodb.put_item(TableName=TABLE, Item=anchor_item(name, description, points))

    def publish(self) -> None:
        """The replica made anew from the table (as `deploy --rebuild-read-model`)."""
        result = aws_lambda.stream_handler({"rebuild": True}, None)
        assert result["rebuilt"], result

    def snapshot(self) -> None:
        """The scheduled function's run: api/v1/dashboard in the site bucket."""
        self.shim.container.submit(aws_lambda.snapshot_handler, {}, None).result(60)


def upload_site(s3: Any) -> None:
    """The site bucket as `codecdash deploy` fills it."""
    for item in aws_site_files():
        s3.put_object(
            Bucket=SITE,
            Key=item.name,
            Body=item.body,
            ContentType=item.content_type,
            CacheControl=item.cache_control,
        )
