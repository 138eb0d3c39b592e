"""Small API server clients for the rig: synchronous requests, bulk writes and watches.

The rig needs no Kubernetes object models, only JSON in and out, and its own user agent
on every request, so the audit log can tell the loader and the recorder from the
controllers under test. Credentials come from a kubeconfig with embedded data, as
`LocalCluster` writes it: a client certificate, or a bearer token.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

JSON = dict[str, Any]

LOADER_AGENT = "sked-bench-loader"
RECORDER_AGENT = "sked-bench-recorder"
REQUEST_TIMEOUT_SECONDS = 60.0
MERGE_PATCH = "application/merge-patch+json"

# Watches of the recorder ask for metadata only: the name, labels, annotations and owner
# are all it needs, and skipping spec and status cuts the bytes it parses several-fold.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_ONLY_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class ApiError(Exception):
    """The API server returned an unexpected HTTP status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} returned HTTP {status}: {body[:400]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Credentials:
    """The API server's URL and the client credentials, read from a kubeconfig."""

    server: str
    context: ssl.SSLContext
    token: str | None = None

    @property
    def netloc(self) -> str:
        return urllib.parse.urlsplit(self.server).netloc

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Credentials:
        """Read the first cluster and user of ``path``; certificate data must be embedded."""
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca)
        if "client-certificate-data" in user:
            # load_cert_chain reads files only, so the pair goes to a private folder briefly.
            with tempfile.TemporaryDirectory(prefix="sked-bench-") as folder:
                cert, key = Path(folder, "client.crt"), Path(folder, "client.key")
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.touch(mode=0o600)
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                context.load_cert_chain(str(cert), str(key))
        return cls(server=cluster["server"], context=context, token=user.get("token"))


def _query(params: dict[str, Any] | None) -> str:
    return f"?{urllib.parse.urlencode(params)}" if params else ""


class Api:
    """Blocking JSON requests, one keep-alive connection per thread."""

    def __init__(self, credentials: Credentials, *, user_agent: str = LOADER_AGENT) -> None:
        self.credentials = credentials
        self.user_agent = user_agent
        self._local = threading.local()

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        return headers

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(
                self.credentials.netloc, timeout=timeout, context=self.credentials.context
            )
            self._local.connection = connection
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        expected: Iterable[int] = (200, 201),
    ) -> JSON:
        """Send one request and return the decoded body; raise `ApiError` otherwise."""
        url = path + _query(params)
        payload = None if body is None else json.dumps(body).encode()
        headers = self._headers(accept)
        if payload is not None:
            headers["Content-Type"] = content_type
        for retry in (False, True):
            connection = self._connection(REQUEST_TIMEOUT_SECONDS)
            try:
                connection.request(method, url, body=payload, headers=headers)
                response = connection.getresponse()
                text = response.read().decode(errors="replace")
                break
            except (OSError, http.client.HTTPException):
                # The server closes idle keep-alive connections; one fresh try is enough.
                connection.close()
                self._local.connection = None
                if retry:
                    raise
        if response.status not in tuple(expected):
            raise ApiError(method, path, response.status, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **params: Any) -> JSON:
        return self.request("GET", path, params=params or None)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def create(self, path: str, body: JSON, *, exist_ok: bool = False) -> JSON:
        expected = (200, 201, 409) if exist_ok else (200, 201)
        return self.request("POST", path, body, expected=expected)

    def delete(self, path: str, *, missing_ok: bool = True) -> None:
        expected = (200, 202, 404) if missing_ok else (200, 202)
        self.request("DELETE", path, {"propagationPolicy": "Background"}, expected=expected)

    def patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def list_all(self, path: str, **params: Any) -> list[JSON]:
        """Return every item of a list, following continue tokens 500 at a time."""
        items: list[JSON] = []
        token = None
        while True:
            query = {"limit": 500, **params}
            if token:
                query["continue"] = token
            page = self.get(path, **query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def watch_lines(
        self, path: str, *, params: dict[str, Any], accept: str = "application/json"
    ) -> Iterator[tuple[float, bytes]]:
        """Yield (arrival time, raw JSON line) for each event of one watch request.

        The request uses a connection of its own and ends when the server closes the
        stream, after ``timeoutSeconds`` in ``params``.
        """
        timeout = float(params.get("timeoutSeconds", 300)) + 30
        connection = http.client.HTTPSConnection(
            self.credentials.netloc, timeout=timeout, context=self.credentials.context
        )
        try:
            connection.request(
                "GET", path + _query({**params, "watch": "1"}), headers=self._headers(accept)
            )
            response = connection.getresponse()
            if response.status != 200:
                raise ApiError(
                    "WATCH", path, response.status, response.read().decode(errors="replace")
                )
            while True:
                line = response.readline()
                if not line:
                    return
                yield time.time(), line
        finally:
            connection.close()


class AsyncApi:
    """Concurrent JSON requests through aiohttp, for bulk creates and open-loop load."""

    def __init__(
        self, credentials: Credentials, *, user_agent: str = LOADER_AGENT, connections: int = 32
    ) -> None:
        self.credentials = credentials
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        self._session = aiohttp.ClientSession(
            base_url=credentials.server,
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=credentials.context, limit=connections),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> AsyncApi:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        content_type: str = "application/json",
        expected: Iterable[int] = (200, 201),
    ) -> tuple[int, JSON]:
        """Send one request and return the status and body; raise `ApiError` otherwise."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._session.request(method, path, data=data, headers=headers) as response:
            text = await response.text()
        if response.status not in tuple(expected):
            raise ApiError(method, path, response.status, text)
        return response.status, (json.loads(text) if text else {})

    async def create_many(
        self, items: list[tuple[str, JSON]], *, concurrency: int = 32, exist_ok: bool = True
    ) -> int:
        """POST every (path, body) with at most ``concurrency`` in flight; return the count."""
        queue: asyncio.Queue[tuple[str, JSON]] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        expected = (200, 201, 409) if exist_ok else (200, 201)

        async def worker() -> None:
            while not queue.empty():
                path, body = queue.get_nowait()
                for attempt in range(5):
                    try:
                        await self.request("POST", path, body, expected=expected)
                        break
                    except ApiError as error:
                        # 429 comes from the API server's priority and fairness limits.
                        if error.status not in (429, 500, 503, 504) or attempt == 4:
                            raise
                        await asyncio.sleep(0.5 * (attempt + 1))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(items)

    async def patch_many(self, items: list[tuple[str, JSON]], *, concurrency: int = 32) -> int:
        """Merge-patch every (path, body) with at most ``concurrency`` in flight."""
        semaphore = asyncio.Semaphore(concurrency)

        async def one(path: str, body: JSON) -> None:
            async with semaphore:
                await self.request("PATCH", path, body, content_type=MERGE_PATCH)

        await asyncio.gather(*(one(path, body) for path, body in items))
        return len(items)
