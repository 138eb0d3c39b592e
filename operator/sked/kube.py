"""Kubernetes API calls the operator makes itself, with retries of transient failures.

kopf watches ScheduledJobs and Pods; everything the operator writes (Pods,
status, Events, dry-run checks) goes through ``KubeClient``. Responses stay
plain dicts, which is cheaper than building the client's model objects.

Transient failures (timeouts, connection resets, 429 and 5xx) are retried
with capped exponential backoff, honouring Retry-After. Everything else is
raised as ``ApiException`` for the caller to classify.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
import yarl
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from sked import naming
from sked.spec import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
REQUEST_TIMEOUT_SECONDS = 30
RETRY_FIRST_DELAY = 0.2
RETRY_MAX_DELAY = 5.0
RETRY_ATTEMPTS = 8

MERGE_PATCH = "application/merge-patch+json"

# Lists are read in pages of this many items, which bounds the memory a start
# needs: 1,000 ScheduledJobs in one response take about 10 MiB once decoded.
LIST_PAGE_SIZE = 250
# A field selector for Pods that are neither Pending nor Running.
FINISHED_PODS = "status.phase!=Pending,status.phase!=Running"

# Watch events of large objects can exceed aiohttp's default read buffer; etcd
# takes requests of up to 1.5 MiB, so 2 MiB holds any object.
READ_BUFFER_BYTES = 2**21


def is_retryable(error: BaseException) -> bool:
    """Tell whether an API failure is worth retrying unchanged."""
    if isinstance(error, ApiException):
        return error.status in RETRYABLE_STATUS
    return isinstance(error, TimeoutError | aiohttp.ClientError | ConnectionError)


def _retry_after(error: BaseException) -> float | None:
    if not isinstance(error, ApiException) or not error.headers:
        return None
    value = error.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _current_namespace(kubeconfig: str | None) -> str:
    """Return the namespace of the service account, or of the kubeconfig's current context."""
    account = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if account.exists():
        return account.read_text().strip()
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = path or str(Path.home() / ".kube" / "config")
    try:
        loaded: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "default"
    current = loaded.get("current-context")
    for entry in loaded.get("contexts") or []:
        if entry.get("name") == current:
            return str((entry.get("context") or {}).get("namespace") or "default")
    return "default"


def _resolve_environment_proxy(configuration: client.Configuration) -> None:
    """Set the proxy that HTTPS_PROXY and NO_PROXY choose for the API server, looked up once."""
    if configuration.proxy:
        return
    try:
        proxy, proxy_auth = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(str(configuration.host)))
    except LookupError:
        return
    configuration.proxy = str(proxy)
    if proxy_auth is not None:
        configuration.proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}


def _session(configuration: client.Configuration) -> aiohttp.ClientSession:
    """Return an HTTP session with the TLS settings of ``configuration`` and no per-request
    environment lookups."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    connector = aiohttp.TCPConnector(limit=configuration.connection_pool_maxsize, ssl=context)
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=READ_BUFFER_BYTES
    )


def error_code(error: BaseException) -> str:
    """Return a short label of an API failure: the HTTP status or the exception's name."""
    if isinstance(error, ApiException):
        return str(error.status)
    return type(error).__name__


class KubeClient:
    """The operator's own API client; one instance per process."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self._api = api_client
        self._on_error = on_error
        self.default_namespace = "default"

    @classmethod
    async def connect(
        cls, *, kubeconfig: str | None = None, on_error: Callable[[str, str], None] | None = None
    ) -> KubeClient:
        """Load the in-cluster service account, or else the kubeconfig, and return a client."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        # Many Pods are created at once when many slots fall due together.
        configuration.connection_pool_maxsize = 64
        _resolve_environment_proxy(configuration)
        api_client = client.ApiClient(configuration)
        # kubernetes_asyncio opens its session with trust_env=True, so aiohttp
        # reads the proxy variables and ~/.netrc in a worker thread for every
        # request: about a tenth of the operator's CPU during a burst of runs.
        # The proxy was looked up once above; this session skips both lookups.
        generic_session = api_client.rest_client.pool_manager
        api_client.rest_client.pool_manager = _session(configuration)
        await generic_session.close()
        instance = cls(api_client, on_error=on_error)
        instance.default_namespace = _current_namespace(kubeconfig)
        return instance

    async def close(self) -> None:
        await self._api.close()

    async def _call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        async def attempt() -> Any:
            return await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )

        return await self._with_retries(verb, attempt)

    async def _with_retries(self, verb: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = RETRY_FIRST_DELAY
        for number in range(1, RETRY_ATTEMPTS + 1):
            try:
                return await call()
            except (TimeoutError, ApiException, aiohttp.ClientError, ConnectionError) as error:
                if self._on_error is not None:
                    self._on_error(verb, error_code(error))
                if not is_retryable(error) or number == RETRY_ATTEMPTS:
                    raise
                wait = _retry_after(error) or delay * (0.5 + random.random())
                wait = min(wait, RETRY_MAX_DELAY * 2)
                logger.warning(
                    "API %s failed with %s; retry %d of %d in %.1fs",
                    verb,
                    error_code(error),
                    number,
                    RETRY_ATTEMPTS - 1,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, RETRY_MAX_DELAY)
        raise AssertionError("unreachable")

    # -- Pods ------------------------------------------------------------------

    async def create_pod(
        self, namespace: str, pod: dict[str, Any], *, dry_run: bool = False
    ) -> Any:
        query = [("dryRun", "All")] if dry_run else []
        return await self._call(
            "create", "POST", f"/api/v1/namespaces/{namespace}/pods", body=pod, query=query
        )

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                "delete",
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                body={"propagationPolicy": "Background"},
            )
        except ApiException as error:
            if error.status != 404:
                raise

    async def delete_pods_named(self, namespace: str, names: list[str]) -> None:
        """Delete the finished Pods of ``names`` in one request, selected by their name label.

        The phase selector spares a Pending or Running Pod that carries one of the
        names, such as a copy of a sked Pod made by hand.
        """
        selector = f"{naming.LABEL_POD} in ({','.join(names)})"
        await self._call(
            "deletecollection",
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods",
            body={"propagationPolicy": "Background"},
            query=[("labelSelector", selector), ("fieldSelector", FINISHED_PODS)],
        )

    async def _list(self, path: str, query: list[tuple[str, Any]]) -> AsyncIterator[Any]:
        """Yield every item of a list, fetched in pages of LIST_PAGE_SIZE."""
        token = ""
        while True:
            page = [*query, ("limit", LIST_PAGE_SIZE)]
            if token:
                page.append(("continue", token))
            result = await self._call("list", "GET", path, query=page)
            for item in result.get("items", []):
                yield item
            token = (result.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def list_pods(self, label_selector: str, namespace: str | None = None) -> AsyncIterator[Any]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        return self._list(path, [("labelSelector", label_selector)])

    async def get_node(self, name: str) -> Any:
        return await self._call("get", "GET", f"/api/v1/nodes/{name}")

    # -- ScheduledJobs ----------------------------------------------------------

    def _job_path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}"
        path = f"{base}/namespaces/{namespace}/{PLURAL}" if namespace else f"{base}/{PLURAL}"
        return f"{path}/{name}" if name else path

    def list_jobs(self, namespace: str | None = None) -> AsyncIterator[Any]:
        return self._list(self._job_path(namespace), [])

    async def patch_job_annotations(
        self, namespace: str, name: str, annotations: dict[str, str]
    ) -> Any:
        """Merge annotations into a ScheduledJob's metadata (used by ``sked trigger`` only)."""
        return await self._call(
            "patch",
            "PATCH",
            self._job_path(namespace, name),
            body={"metadata": {"annotations": annotations}},
            content_type=MERGE_PATCH,
        )

    async def get_job(self, namespace: str, name: str) -> Any:
        return await self._call("get", "GET", self._job_path(namespace, name))

    async def patch_job_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None
    ) -> Any:
        """Merge-patch the status subresource; with ``resource_version`` a stale write gets 409."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._call(
            "patch",
            "PATCH",
            self._job_path(namespace, name) + "/status",
            body=body,
            content_type=MERGE_PATCH,
        )

    # -- Events -----------------------------------------------------------------

    async def create_event(self, namespace: str, event: dict[str, Any]) -> Any:
        return await self._call(
            "create", "POST", f"/api/v1/namespaces/{namespace}/events", body=event
        )

    # -- Leases -----------------------------------------------------------------

    def _lease_path(self, namespace: str, name: str | None = None) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        return f"{path}/{name}" if name else path

    async def get_lease(self, namespace: str, name: str) -> Any:
        return await self._call("get", "GET", self._lease_path(namespace, name))

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> Any:
        return await self._call("create", "POST", self._lease_path(namespace), body=lease)

    async def replace_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> Any:
        return await self._call("update", "PUT", self._lease_path(namespace, name), body=lease)
