"""A minimal HTTPS client for the few API calls that bring the local cluster up.

The standard library is enough for readiness probes and a handful of JSON requests, and it
keeps the operator's runtime free of a second, synchronous Kubernetes client.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from typing import Any

from sked.localcluster.certs import KeyPair

JSON = dict[str, Any]

# Readiness probes poll every fraction of a second, so a single hung request must not
# hold a probe for long.
REQUEST_TIMEOUT_SECONDS = 5.0

# Names these requests in the API server's audit log.
USER_AGENT = "sked-localcluster"


class ApiError(Exception):
    """The API server returned an unexpected HTTP status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} returned HTTP {status}: {body[:500]}")
        self.status = status


def tls_context(ca_file: str, client: KeyPair | None = None) -> ssl.SSLContext:
    """Return a TLS context that trusts only ``ca_file`` and presents ``client`` if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def get(
    url: str, context: ssl.SSLContext | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS
) -> tuple[int, str]:
    """Send a GET to ``url`` and return the HTTP status and the body as text."""
    parts = urllib.parse.urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"User-Agent": USER_AGENT})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


class ApiClient:
    """JSON requests to one API server with a client certificate."""

    def __init__(self, server: str, context: ssl.SSLContext) -> None:
        self.netloc = urllib.parse.urlsplit(server).netloc
        self.context = context

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        content_type: str = "application/json",
        expected: tuple[int, ...] = (200, 201),
    ) -> JSON:
        """Send one request and return the decoded JSON body; raise `ApiError` otherwise."""
        connection = http.client.HTTPSConnection(
            self.netloc, timeout=REQUEST_TIMEOUT_SECONDS, context=self.context
        )
        try:
            headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            connection.close()
        if response.status not in expected:
            raise ApiError(method, path, response.status, text)
        return json.loads(text) if text else {}
