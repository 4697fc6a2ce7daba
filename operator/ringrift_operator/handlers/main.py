"""``ringrift-operator run``: the operator process — kopf watching the custom resources, the
controller (cache, work queue, reconcilers) behind it.

kopf's progress and diff-base records go to annotations, so ``status`` stays the schema's and
only the reconcilers write it. Handlers stay a few lines: hand the event to the controller.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import kopf

from ringrift_operator.api.common import GROUP, VERSION
from ringrift_operator.api.selfplayjob import KIND as SELFPLAYJOB
from ringrift_operator.api.selfplayjob import PLURAL as SELFPLAYJOBS
from ringrift_operator.api.settings import OperatorSettings, SettingsError, load_settings
from ringrift_operator.api.syncplan import KIND as SYNCPLAN
from ringrift_operator.api.syncplan import PLURAL as SYNCPLANS
from ringrift_operator.api.trainingrun import KIND as TRAININGRUN
from ringrift_operator.api.trainingrun import PLURAL as TRAININGRUNS
from ringrift_operator.kube.client import load_credentials
from ringrift_operator.loops.controller import Controller
from ringrift_operator.web.metrics import install_data_plane_metrics
from ringrift_operator.web.operator_metrics import install_operator_metrics
from ringrift_operator.web.server import build_app, start_server

log = logging.getLogger("ringrift.operator")


class _Options:
    settings: OperatorSettings
    kubeconfig: str | None = None
    identity: str = ""


OPTIONS = _Options()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330  # a silent stream is restarted, never trusted
    settings.networking.request_timeout = 30
    # The resources are known; scanning would need cluster-wide list on CRDs and namespaces.
    settings.scanning.disabled = True
    controller = await Controller.create(
        OPTIONS.settings, kubeconfig=OPTIONS.kubeconfig, identity=OPTIONS.identity,
        on_lost=_exit_on_lost_lease,
    )  # fmt: skip
    install_data_plane_metrics(controller.deps)
    install_operator_metrics(controller.deps)
    memo.controller = controller
    if OPTIONS.settings.http_port:
        app = build_app(status=controller.status, ready=controller.ready,
                        registry=lambda: controller.deps.registry)  # fmt: skip
        memo.web = await start_server(app, host="0.0.0.0", port=OPTIONS.settings.http_port)
    await controller.start()  # standby until this replica holds the Lease


def _exit_on_lost_lease(why: str) -> None:
    """A replica that lost its lease stops acting at once: exit, to be restarted as a standby."""
    log.error("exiting: %s", why)
    logging.shutdown()
    os._exit(3)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """The same credentials as the controller's client: one source, whatever kopf would guess."""
    creds = load_credentials(OPTIONS.kubeconfig)
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_file,
        insecure=not creds.verify,
        token=creds.token,
        certificate_path=creds.cert_file,
        private_key_path=creds.key_file,
        scheme="Bearer" if creds.token else None,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()
    web = memo.get("web")
    if web is not None:
        await web.cleanup()


@kopf.on.event(GROUP, VERSION, SELFPLAYJOBS)
async def selfplayjob_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe(SELFPLAYJOB, event.get("type"), event["object"])


@kopf.on.event(GROUP, VERSION, SYNCPLANS)
async def syncplan_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe(SYNCPLAN, event.get("type"), event["object"])


@kopf.on.event(GROUP, VERSION, TRAININGRUNS)
async def trainingrun_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe(TRAININGRUN, event.get("type"), event["object"])


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ringrift-operator run", description=__doc__)
    parser.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, else in-cluster)")
    parser.add_argument("--settings-file", help="settings YAML/JSON (overlaid by RINGRIFT_* env)")
    parser.add_argument("--namespace", help="watch one namespace (default: all)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(list(argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        OPTIONS.settings = load_settings(file=args.settings_file)
    except SettingsError as e:
        print(f"ringrift-operator: {e}", file=sys.stderr)
        return 2
    OPTIONS.kubeconfig = args.kubeconfig
    OPTIONS.identity = f"{socket.gethostname()}-{os.getpid()}"
    namespace = args.namespace or OPTIONS.settings.namespace
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespace,
            namespaces=[namespace] if namespace else [],
        )
    )
    return 0
