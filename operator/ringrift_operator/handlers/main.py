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
import signal
import socket
import sys
import threading
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
from ringrift_operator.kube.client import (
    CONNECT_SECONDS,
    load_credentials,
    watch_server_timeout,
)
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
    configure_kopf(settings, OPTIONS.settings)
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


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's timeouts, so that none of its watches can stall silently and a shutdown is
    bounded:

    - a watch that receives nothing — no event, no bookmark — for ``watch_stall_seconds`` is
      treated as dead and reconnected (kopf's inactivity timeout), like the cache's reflectors;
    - every watch request ends server-side well before that (``server_timeout``, as the
      reflectors' ``timeoutSeconds``) and is resumed, so a healthy quiet watch never looks
      stalled; the client gives up on a request ``client_timeout`` after its start;
      connecting may take ``connect_timeout``;
    - after SIGTERM kopf kills the process if its graceful shutdown takes longer than
      ``shutdown_timeout_seconds`` (a graceful shutdown waits on API calls, which hang while
      the API server is away).
    """
    server_timeout = watch_server_timeout(ours.watch_stall_seconds)
    settings.watching.server_timeout = server_timeout
    settings.watching.client_timeout = server_timeout + ours.watch_stall_seconds
    settings.watching.connect_timeout = CONNECT_SECONDS
    settings.watching.inactivity_timeout = float(ours.watch_stall_seconds)
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = CONNECT_SECONDS
    settings.process.ultimate_exiting_timeout = float(ours.shutdown_timeout_seconds)


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
        # Within the shutdown deadline (the API server may be gone: its calls would hang).
        budget = max(0.5, OPTIONS.settings.shutdown_timeout_seconds - 2.0)
        try:
            await asyncio.wait_for(controller.stop(), timeout=budget)
        except TimeoutError:
            log.warning("stopping the controller took over %.0fs; leaving the rest", budget)
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
    return asyncio.run(_run(namespace, OPTIONS.settings.shutdown_timeout_seconds))


async def _run(namespace: str | None, shutdown_timeout: float) -> int:
    """kopf until SIGTERM/SIGINT, with a hard deadline on the shutdown that follows.

    Until its startup finishes (a standby waits there for the Lease) kopf's own signal handling
    applies, bounded by ``ultimate_exiting_timeout`` (see :func:`configure_kopf`). From then on
    the signals are ours: ask kopf to stop, and arm a watchdog thread that ends the process with
    status 4 if the graceful stop is not done by the deadline — it fires even when the event
    loop is stuck."""
    loop = asyncio.get_running_loop()
    ready, stop = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            standalone=True, clusterwide=not namespace,
            namespaces=[namespace] if namespace else [], ready_flag=ready, stop_flag=stop,
        )
    )  # fmt: skip
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({operator, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not operator.done():

        def on_signal(signum: int) -> None:
            if stop.is_set():
                return
            log.info("signal %s: stopping (at most %.0fs)", signal.Signals(signum).name,
                     shutdown_timeout)  # fmt: skip
            arm_exit_deadline(shutdown_timeout)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
    await operator
    return 0


def arm_exit_deadline(seconds: float, *, status: int = 4) -> threading.Timer:
    """End the process with ``status`` in ``seconds`` unless it has exited by then."""

    def expire() -> None:
        log.error("shutdown did not finish within %.0fs; exiting with status %d", seconds, status)
        logging.shutdown()
        os._exit(status)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer
