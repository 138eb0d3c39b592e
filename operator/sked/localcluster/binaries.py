"""Locate the control-plane binaries and build the missing ones.

Binaries come from ``hack/build-control-plane.sh``, which caches them by version in
``$SKED_CACHE/bin/<component>-<version>/``. ``KUBEBUILDER_ASSETS``, the envtest convention
for a folder that contains ``etcd`` and ``kube-apiserver``, takes precedence for every
binary it contains. The version variables read here are the ones the build script reads, with the
same defaults, so both agree on the cache layout.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from sked.localcluster.errors import BinaryNotFoundError

logger = logging.getLogger(__name__)

DEFAULT_KUBERNETES_VERSION = "v1.33.13"
DEFAULT_ETCD_VERSION = "v3.5.33"
DEFAULT_KWOK_VERSION = "v0.8.0"

BUILD_SCRIPT = Path("hack") / "build-control-plane.sh"

# The build script names its components after the cache folders, and the Kubernetes folder
# contains three binaries.
_BUILD_COMPONENT_OF = {
    "etcd": "etcd",
    "kube-apiserver": "kubernetes",
    "kube-controller-manager": "kubernetes",
    "kube-scheduler": "kubernetes",
    "kwok": "kwok",
}


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Paths of the executables that make up the local control plane."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path

    def by_name(self) -> dict[str, Path]:
        """Return the paths keyed by executable name (``kube-apiserver``, ...)."""
        return {
            field.name.replace("_", "-"): getattr(self, field.name)
            for field in dataclasses.fields(self)
        }

    def missing(self) -> dict[str, Path]:
        """Return the executables that do not exist, keyed by name."""
        return {
            name: path
            for name, path in self.by_name().items()
            if not (path.is_file() and os.access(path, os.X_OK))
        }

    def require(self) -> None:
        """Raise `BinaryNotFoundError` unless every executable exists."""
        missing = self.missing()
        if missing:
            listing = ", ".join(f"{name} at {path}" for name, path in missing.items())
            raise BinaryNotFoundError(
                f"Control-plane binaries not found: {listing}. Build them with `make "
                "cluster-up` or hack/build-control-plane.sh in the sked repository, set "
                "SKED_CACHE to a cache folder that holds them, or set KUBEBUILDER_ASSETS to "
                "a folder with etcd and kube-apiserver."
            )


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the cache folder: ``$SKED_CACHE``, else ``$XDG_CACHE_HOME/sked``."""
    environ = os.environ if environ is None else environ
    if environ.get("SKED_CACHE"):
        return Path(environ["SKED_CACHE"]).expanduser()
    xdg_cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg_cache).expanduser() / "sked"


def find_binaries(environ: Mapping[str, str] | None = None) -> Binaries:
    """Resolve the path of each binary without checking that it exists.

    A binary present in ``$KUBEBUILDER_ASSETS`` wins; every other one comes from the
    versioned cache folders. Call `Binaries.missing` or `Binaries.require` to check.
    """
    environ = os.environ if environ is None else environ
    bin_dir = cache_dir(environ) / "bin"
    kubernetes_dir = bin_dir / (
        "kubernetes-" + environ.get("KUBERNETES_VERSION", DEFAULT_KUBERNETES_VERSION)
    )
    paths = {
        "etcd": bin_dir / ("etcd-" + environ.get("ETCD_VERSION", DEFAULT_ETCD_VERSION)) / "etcd",
        "kube-apiserver": kubernetes_dir / "kube-apiserver",
        "kube-controller-manager": kubernetes_dir / "kube-controller-manager",
        "kube-scheduler": kubernetes_dir / "kube-scheduler",
        "kwok": bin_dir / ("kwok-" + environ.get("KWOK_VERSION", DEFAULT_KWOK_VERSION)) / "kwok",
    }
    assets = environ.get("KUBEBUILDER_ASSETS")
    if assets:
        for name in paths:
            candidate = Path(assets).expanduser() / name
            if candidate.is_file():
                paths[name] = candidate
    return Binaries(**{name.replace("-", "_"): path for name, path in paths.items()})


def find_build_script() -> Path | None:
    """Return the repository's build script, or None when sked runs from an install."""
    # This file sits at <repo>/operator/sked/localcluster/binaries.py.
    repo_root = Path(__file__).resolve().parents[3]
    script = repo_root / BUILD_SCRIPT
    return script if script.is_file() else None


def ensure_binaries(binaries: Binaries, *, log_path: Path | None = None) -> None:
    """Build the missing binaries with the repository's build script, then check them.

    Raises `BinaryNotFoundError` when the script is not available (sked installed outside
    its repository), when a binary missing from ``$KUBEBUILDER_ASSETS`` is one that the
    folder is expected to hold, or when the build did not produce the binary.
    """
    missing = binaries.missing()
    if not missing:
        return

    assets = os.environ.get("KUBEBUILDER_ASSETS")
    expected_in_assets = [name for name in ("etcd", "kube-apiserver") if name in missing]
    if assets and expected_in_assets:
        raise BinaryNotFoundError(
            f"KUBEBUILDER_ASSETS is set to {assets}, but it has no "
            f"{' or '.join(expected_in_assets)}. Point it at a folder that contains etcd and "
            "kube-apiserver, or unset it to use the binaries built into SKED_CACHE."
        )

    script = find_build_script()
    if script is None:
        binaries.require()
        return

    components = sorted({_BUILD_COMPONENT_OF[name] for name in missing})
    logger.info(
        "Building the missing control-plane binaries %s with %s, which takes up to 30 "
        "minutes the first time; its output goes to %s",
        components,
        script,
        log_path or "this terminal",
    )
    if log_path is None:
        completed = subprocess.run(["bash", str(script), *components], check=False)
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            completed = subprocess.run(
                ["bash", str(script), *components],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                check=False,
            )
    if completed.returncode != 0:
        where = f"; its output is in {log_path}" if log_path is not None else ""
        raise BinaryNotFoundError(
            f"{script} {' '.join(components)} failed with exit code "
            f"{completed.returncode}{where}. Fix the build, or set KUBEBUILDER_ASSETS to a "
            "folder that contains etcd and kube-apiserver."
        )
    binaries.require()
