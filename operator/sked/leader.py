"""Leader election over a ``coordination.k8s.io/v1`` Lease, as Kubernetes' own controllers do it.

Several replicas run; the one holding the Lease schedules, the others only
try to acquire it. Expiry is judged by when this replica last saw the Lease
record change (on its own monotonic clock), not by the timestamps other
replicas wrote, so clock skew between machines cannot make two leaders.

A leader that cannot renew within the renew deadline must stop at once:
``hold()`` raises ``LeadershipLost`` and the caller exits the process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from sked.errors import ConfigurationError, SkedError
from sked.kube import KubeClient

logger = logging.getLogger(__name__)


class LeadershipLost(SkedError):
    """The Lease could not be renewed in time, or another replica holds it now."""


@dataclass(frozen=True)
class LeaseSettings:
    """Timings of the Lease, with Kubernetes' defaults (15 s, 10 s, 2 s)."""

    namespace: str = "default"
    name: str = "sked-leader"
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def check(self) -> None:
        """Raise ConfigurationError unless duration > renew deadline > retry period > 0."""
        if not self.duration > self.renew_deadline > self.retry_period > 0:
            raise ConfigurationError(
                "invalid Lease timings: need lease duration > renew deadline > retry period > 0 "
                f"(got {self.duration:g}s, {self.renew_deadline:g}s, {self.retry_period:g}s); "
                "for example 15, 10 and 2"
            )


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires, renews and releases one Lease for one identity."""

    def __init__(
        self,
        kube: KubeClient,
        settings: LeaseSettings,
        identity: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        settings.check()
        self._kube = kube
        self.settings = settings
        self.identity = identity
        self._monotonic = monotonic
        self._on_change = on_change
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self.leading = False
        self._last_renew = 0.0

    def _set_leading(self, value: bool) -> None:
        if value != self.leading and self._on_change is not None:
            self._on_change(value)
        self.leading = value

    def _lease_body(self, previous: dict[str, Any] | None, *, transitions: int) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        spec = dict((previous or {}).get("spec") or {})
        acquired = spec.get("acquireTime") if spec.get("holderIdentity") == self.identity else None
        spec.update(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.settings.duration)),
                "acquireTime": acquired or _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": transitions,
            }
        )
        metadata: dict[str, Any] = {
            "name": self.settings.name,
            "namespace": self.settings.namespace,
        }
        if previous is not None:
            metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    async def try_acquire_or_renew(self) -> bool:
        """Make one attempt to take or keep the Lease; return whether this replica holds it."""
        namespace, name = self.settings.namespace, self.settings.name
        try:
            current = await self._kube.get_lease(namespace, name)
        except ApiException as error:
            if error.status != 404:
                raise
            current = None
        if current is None:
            try:
                await self._kube.create_lease(namespace, self._lease_body(None, transitions=0))
            except ApiException as error:
                if error.status == 409:
                    return False  # Another replica created it first.
                raise
            return True

        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        now = self._monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.duration)
        expired = now - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            transitions += 1
        try:
            await self._kube.replace_lease(
                namespace, name, self._lease_body(current, transitions=transitions)
            )
        except ApiException as error:
            if error.status == 409:
                return False  # Someone else wrote the Lease since the read.
            raise
        return True

    async def acquire(self) -> None:
        """Return once this replica holds the Lease, trying every retry period."""
        logger.info(
            "%s is trying to acquire Lease %s/%s",
            self.identity,
            self.settings.namespace,
            self.settings.name,
        )
        while True:
            try:
                if await self.try_acquire_or_renew():
                    break
            except (ApiException, OSError, TimeoutError) as error:
                logger.warning("acquiring Lease %s failed: %s", self.settings.name, error)
            await asyncio.sleep(self.settings.retry_period)
        self._last_renew = self._monotonic()
        self._set_leading(True)
        logger.info(
            "%s acquired Lease %s/%s", self.identity, self.settings.namespace, self.settings.name
        )

    async def hold(self) -> None:
        """Renew the Lease every retry period; raise LeadershipLost past the renew deadline."""
        while True:
            await asyncio.sleep(self.settings.retry_period)
            left = self._last_renew + self.settings.renew_deadline - self._monotonic()
            try:
                # asyncio.timeout, not wait_for, which can swallow a cancel on Python 3.11.
                async with asyncio.timeout(max(0.1, left)):
                    renewed = await self.try_acquire_or_renew()
            except (ApiException, OSError, TimeoutError) as error:
                logger.warning("renewing Lease %s failed: %s", self.settings.name, error)
                renewed = False
            now = self._monotonic()
            if renewed:
                self._last_renew = now
                continue
            if now - self._last_renew >= self.settings.renew_deadline:
                self._set_leading(False)
                logger.error(
                    "%s lost Lease %s/%s: not renewed within %gs",
                    self.identity,
                    self.settings.namespace,
                    self.settings.name,
                    self.settings.renew_deadline,
                )
                raise LeadershipLost(f"Lease {self.settings.name} was not renewed in time")

    async def release(self) -> None:
        """Empty the holder so a follower takes over within one retry period."""
        if not self.leading:
            return
        self._set_leading(False)
        namespace, name = self.settings.namespace, self.settings.name
        try:
            current = await self._kube.get_lease(namespace, name)
            if (current.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            body = self._lease_body(
                current, transitions=int(current["spec"].get("leaseTransitions") or 0)
            )
            body["spec"]["holderIdentity"] = ""
            body["spec"]["leaseDurationSeconds"] = 1
            await self._kube.replace_lease(namespace, name, body)
            logger.info("%s released Lease %s/%s", self.identity, namespace, name)
        except (ApiException, OSError, TimeoutError) as error:
            logger.warning("releasing Lease %s failed: %s; it expires on its own", name, error)
