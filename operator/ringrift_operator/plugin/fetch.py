"""The plugin's reads: the API server (through the ``kubernetes`` client, with the user's
kubeconfig), and optionally the operator's ``/status`` endpoint and its history store file.
Everything else in the plugin is pure and works on what these functions return.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ringrift_operator.api.common import ALL_CONFIG_KEYS, GROUP, VERSION
from ringrift_operator.api.settings import AutopilotSettings, OperatorSettings, SettingsError
from ringrift_operator.kube.client import ApiError, KubeClient, load_credentials
from ringrift_operator.plugin.views import ClusterObjects

JsonDict = dict[str, Any]
SETTINGS_KEY = "settings.yaml"  # the key of the chart's settings ConfigMap
CHART_SELECTOR = "app.kubernetes.io/name=ringrift-operator"


class PluginError(Exception):
    """Something the user must fix; printed without a traceback."""


class NotFound(PluginError):
    pass


class Reader:
    """GET requests against the API server as plain JSON, on the operator's own client
    (``kube.client``: kubeconfig or in-cluster credentials). Create with :meth:`connect`."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    @classmethod
    async def connect(cls, *, kubeconfig: str | None, context: str | None = None) -> Reader:
        try:
            credentials = load_credentials(kubeconfig, context=context)
        except Exception as e:  # a missing or broken kubeconfig, no in-cluster account
            raise PluginError(f"cannot load the kubeconfig: {e}") from e
        return cls(await KubeClient.connect(credentials, request_timeout=30))

    async def close(self) -> None:
        await self.client.close()

    async def get(self, path: str, *, query: Mapping[str, str] | None = None) -> JsonDict:
        try:
            return await self.client.get(path, params=query)
        except ApiError as e:
            if e.not_found:
                raise NotFound(path) from e
            raise PluginError(f"GET {path}: {e}") from e
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise PluginError(
                f"cannot reach the API server at {self.client.credentials.server}: {e}"
            ) from e

    async def items(self, path: str, *, query: Mapping[str, str] | None = None) -> list[JsonDict]:
        """Every item of a list, following ``continue`` tokens; [] when the resource does not
        exist (the CRDs are not installed)."""
        params = {**(query or {}), "limit": "500"}
        out: list[JsonDict] = []
        while True:
            try:
                page = await self.get(path, query=params)
            except NotFound:
                return out
            out += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return out
            params["continue"] = token


def _scoped(namespace: str | None, group_path: str, plural: str) -> str:
    return (
        f"{group_path}/namespaces/{namespace}/{plural}" if namespace else f"{group_path}/{plural}"
    )


CUSTOM = f"/apis/{GROUP}/{VERSION}"


SOURCES: dict[str, tuple[str, dict[str, str], bool]] = {
    # ClusterObjects field: (path, query, namespaced). Nodes, Pods and Leases are read
    # cluster-wide: GPUs are shared by every namespace, and the Lease lives with the operator.
    "nodes": ("/api/v1/nodes", {}, False),
    "pods": ("/api/v1/pods", {"fieldSelector": "spec.nodeName!="}, False),
    "leases": ("/apis/coordination.k8s.io/v1/leases", {}, False),
    "selfplayjobs": (f"{CUSTOM}/selfplayjobs", {}, True),
    "trainingruns": (f"{CUSTOM}/trainingruns", {}, True),
    "syncplans": (f"{CUSTOM}/syncplans", {}, True),
}


async def fetch_objects(
    reader: Reader, *, namespace: str | None, want: frozenset[str] = frozenset()
) -> ClusterObjects:
    """Read what a command needs (``want``: names of ClusterObjects fields; empty: all),
    concurrently."""
    names = [name for name in SOURCES if not want or name in want]

    async def one(name: str) -> list[JsonDict]:
        path, query, namespaced = SOURCES[name]
        if namespaced and namespace:
            group, plural = path.rsplit("/", 1)
            path = f"{group}/namespaces/{namespace}/{plural}"
        return await reader.items(path, query=query)

    lists = await asyncio.gather(*(one(name) for name in names))
    return ClusterObjects(**dict(zip(names, lists, strict=True)))


async def fetch_selfplayjob(reader: Reader, *, namespace: str, name: str) -> JsonDict:
    try:
        return await reader.get(f"{CUSTOM}/namespaces/{namespace}/selfplayjobs/{name}")
    except NotFound:
        raise PluginError(
            f'selfplayjobs.{GROUP} "{name}" not found in namespace {namespace}'
        ) from None


async def fetch_events(reader: Reader, *, obj: JsonDict) -> list[JsonDict]:
    """core/v1 Events about ``obj`` (the operator writes its Events there)."""
    meta = obj.get("metadata") or {}
    return await reader.items(
        f"/api/v1/namespaces/{meta.get('namespace', 'default')}/events",
        query={"fieldSelector": f"involvedObject.uid={meta.get('uid', '')}"},
    )


def fetch_operator_status(url: str, *, timeout: float = 3.0) -> JsonDict:
    """The operator's ``/status`` document (``url`` is its base URL or the /status URL)."""
    full = url if url.rstrip("/").endswith("/status") else url.rstrip("/") + "/status"
    try:
        with urllib.request.urlopen(full, timeout=timeout) as response:
            doc: JsonDict = json.loads(response.read())
            return doc
    except Exception as e:
        raise PluginError(f"cannot read the operator's status at {full}: {e}") from e


async def load_autopilot_settings(
    reader: Reader | None, *, file: str | None, configmap: str | None
) -> tuple[AutopilotSettings, str]:
    """The autopilot (scheduler) settings and where they came from: a settings file, the
    named ConfigMap (``namespace/name``), the chart's ConfigMap if exactly one is found, else
    the defaults."""
    if file:
        return _autopilot(read_yaml_file(file), file), file
    maps: list[JsonDict] = []
    if reader is not None and configmap:
        ns, _, name = configmap.rpartition("/")
        try:
            maps = [await reader.get(f"/api/v1/namespaces/{ns or 'default'}/configmaps/{name}")]
        except NotFound:
            raise PluginError(f"ConfigMap {configmap} not found") from None
        if SETTINGS_KEY not in (maps[0].get("data") or {}):
            raise PluginError(f"ConfigMap {configmap} has no {SETTINGS_KEY}")
    elif reader is not None:
        try:
            maps = await reader.items("/api/v1/configmaps", query={"labelSelector": CHART_SELECTOR})
        except PluginError:
            maps = []  # not allowed to list ConfigMaps cluster-wide: use the defaults
        maps = [m for m in maps if SETTINGS_KEY in (m.get("data") or {})]
    if len(maps) == 1:
        meta = maps[0].get("metadata") or {}
        where = f"ConfigMap {meta.get('namespace')}/{meta.get('name')}"
        try:
            data = yaml.safe_load(maps[0]["data"][SETTINGS_KEY]) or {}
        except yaml.YAMLError as e:
            raise PluginError(f"{where}: {e}") from e
        return _autopilot(data, where), where
    if len(maps) > 1:
        names = ", ".join(
            f"{(m.get('metadata') or {}).get('namespace')}/{(m.get('metadata') or {}).get('name')}"
            for m in maps
        )
        return AutopilotSettings(), (
            f"defaults: several operator settings ConfigMaps ({names}); "
            "pick one with --settings-configmap"
        )
    return AutopilotSettings(), "defaults (no operator settings ConfigMap found)"


def read_yaml_file(path: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PluginError(f"cannot read settings file {path}: {e}") from e


def _autopilot(data: Any, where: str) -> AutopilotSettings:
    from pydantic import ValidationError

    try:
        return OperatorSettings.model_validate(data).autopilot
    except ValidationError as e:
        raise PluginError(f"invalid operator settings in {where}: {e}") from e
    except SettingsError as e:
        raise PluginError(str(e)) from e


def _is_file(path: str) -> bool:
    return Path(path).is_file()


async def load_history_elo(path: str) -> list[JsonDict]:
    """Elo points per config and generation from the operator's history store file: every
    model in the registry with its current rating."""
    if not _is_file(path):
        raise PluginError(f"no history store at {path}")
    from ringrift_operator.state.history import HistoryStore

    points: list[JsonDict] = []
    async with HistoryStore.open(path, check=False) as store:
        for config in ALL_CONFIG_KEYS:
            for model in await store.list_models(config=config):
                rating = await store.fetch_elo_rating(config=config, model_id=model.model_id)
                if rating is None:
                    continue
                points.append(
                    {
                        "config": config,
                        "generation": model.generation,
                        "rating": rating.rating,
                        "eloDelta": None,
                        "promoted": model.promoted or model.promoted_at is not None,
                        "trainingRun": model.training_run,
                    }
                )
    return points
