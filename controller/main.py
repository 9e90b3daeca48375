"""Wiring of the controller process: threads for leader election, the market watcher, the
instance fleet, the virtual node(s), the pod watch, the reconcile workers and the reaper, the
virtual node's kubelet API (``kubectl logs``), and the Prometheus metrics endpoint. Every
replica polls offers and serves the kubelet API (its own extender and webhook read
the snapshot it publishes); only the leader acts on pods, nodes and instances."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from vastmarket.budgets import BudgetStateFile
from vastmarket.client import Timeouts, VastClient
from vastmarket.pacing import CreateQueue, Pacer
from vastmarket.config import SelectionConfig
from vastmarket.errors import ConfigError
from vastmarket.market_watch import MarketWatcher
from vastmarket.snapshot import OfferSnapshot, SnapshotFile

from .bid_metrics import BidCollector
from .budgets import BudgetCollector, BudgetKeeper
from .checkpoints import Checkpoints
from .demand import ClusterDemand
from .fleet import Fleet, OfferSource
from .market_metrics import MarketCollector, market_condition, market_event
from .kube import KubeError, KubeGateway, load_api_client
from .kubelet_setup import kubelet_api
from .leader import LeaderElector
from .node import MARKET_CONDITION, NodeShape, VirtualNodeKeeper
from .reaper import Reaper
from .reconciler import Reconciler, safe_reconcile
from .settings import ControllerSettings
from .workqueue import WorkQueue

log = logging.getLogger("kube_vast.controller")
LEASE_NAME = "kube-vast-controller"
OFFERS_ANNOTATION = "vast.ai/offers-published"  # on the virtual nodes: when the offers last changed


def derive_cluster_id(kube: KubeGateway) -> str:
    """The first 8 characters of the kube-system namespace UID: stable and unique per cluster."""
    ns = kube._call("get namespace kube-system", kube.core.read_namespace, "kube-system")
    return str(ns["metadata"]["uid"]).replace("-", "")[:8]


class Controller:
    def __init__(self, settings: ControllerSettings, config: SelectionConfig, environ: Mapping[str, str], *,
                 metrics_port: int | None = None) -> None:
        self.settings = settings.with_identity()
        self.config = config
        self.stop = threading.Event()
        self.kube = KubeGateway(load_api_client(settings.kubeconfig), host=self.settings.identity)
        url = environ.get("VAST_API_URL") or environ.get("VAST_URL") or ""
        if not url:
            raise ConfigError("VAST_API_URL is not set: point it at https://console.vast.ai (with VAST_API_KEY) "
                              "or at the simulator")
        pacer = Pacer(self.settings.pacing_intervals(url))  # Vast's per-endpoint rate limits
        self.vast = VastClient.from_environment(environ, timeouts=Timeouts(read=self.settings.vast_read_timeout),
                                                pacer=pacer)
        checkpoint = Checkpoints.from_environment(environ)  # a crash-test hook: inert unless set
        if "vast.ai" in url and not (environ.get("VAST_API_KEY") or environ.get("VAST_API_KEY_FILE")):
            raise ConfigError("the real Vast API needs a key: set VAST_API_KEY or VAST_API_KEY_FILE")
        cluster_id = self.settings.cluster_id or derive_cluster_id(self.kube)
        self.demand = ClusterDemand(self.kube, config, self.settings.virtual_nodes)
        self.poller = MarketWatcher(
            lambda filters, order, limit: self.vast.search_offers(filters, order=order, limit=limit),
            SnapshotFile(self.settings.snapshot_path).publish, self.demand, self.vast.gpu_names,
            interval=self.settings.poll_interval,
            # Below the readers' age limit, so that a snapshot is renewed before they refuse it.
            refresh_interval=min(self.settings.refresh_interval, 0.8 * self.settings.max_snapshot_age),
            demand_interval=self.settings.demand_interval, source=url,
            include_external=self.settings.include_external_offers, max_queries=self.settings.max_market_queries)
        self.fleet = Fleet(self.vast, cluster_id, interval=self.settings.fleet_interval)
        self.offers = OfferSource(self.poller)
        self.reconciler = Reconciler(self.kube, self.vast, self.fleet, self.offers, self.settings, config,
                                     checkpoint=checkpoint)
        self.reconciler.create_slots = CreateQueue(pacer.interval("create"),  # oldest pod first
                                                   free_in=lambda: pacer.free_in("create"))
        self.elector = LeaderElector(self.kube, namespace=self.settings.namespace, name=LEASE_NAME,
                                     identity=self.settings.identity, lease_seconds=self.settings.lease_seconds,
                                     renew_every=self.settings.renew_every)
        self.kubelet = kubelet_api(self.settings, self.kube, self.vast)
        self.keeper = VirtualNodeKeeper(self.kube, self.settings.virtual_nodes, NodeShape(gpus=self.settings.node_gpus),
                                        vast_healthy=self._vast_healthy,
                                        lease_renew=min(10.0, 2 * self.settings.renew_every),
                                        endpoint=self.kubelet.endpoint,
                                        market=lambda: market_condition(self.poller, self.settings.max_snapshot_age))
        self.poller.listeners.append(self._market_changed)
        self.poller.on_publish.append(self._offers_published)
        self.reaper = Reaper(self.kube, self.fleet, self.settings.virtual_nodes, grace=self.settings.reaper_grace,
                             dry_run=self.settings.reaper_dry_run, checkpoint=checkpoint)
        self.queue = WorkQueue()
        self.budgets = BudgetKeeper(self.kube, self.fleet, self.settings.virtual_nodes,
                                    BudgetStateFile.beside(self.settings.snapshot_path),
                                    interval=self.settings.budget_interval,
                                    hold=max(10.0, 3 * self.settings.fleet_interval))
        self.budgets.wake = self.queue.add
        self.reconciler.budgets = self.budgets
        self.fleet.listeners.append(self._wake_booting)
        self.registry = CollectorRegistry()
        self._metrics(metrics_port)
        log.info("controller %s: cluster id %s, virtual nodes %s, Vast at %s", self.settings.identity, cluster_id,
                 ",".join(self.settings.virtual_nodes), url)

    def _metrics(self, port: int | None) -> None:
        events = Counter("kube_vast_controller_steps", "Controller steps by Event reason (rentals, failures, "
                         "destroys, budget refusals…)", ["reason"], registry=self.registry)
        self.reconciler.on_event = lambda reason: events.labels(reason).inc()
        instances = Gauge("kube_vast_instances", "Live Vast instances of this cluster", registry=self.registry)
        instances.set_function(lambda: self.fleet.hourly_spend()[1])
        burn = Gauge("kube_vast_spend_dollars_per_hour", "$/hour of this cluster's live instances", registry=self.registry)
        burn.set_function(lambda: self.fleet.hourly_spend()[0])
        waiting = Gauge("kube_vast_pods_waiting_for_create_slot", "Pods waiting for their turn to rent: Vast "
                        "allows one create per interval (KUBE_VAST_VAST_PACING); oldest pod first",
                        registry=self.registry)
        waiting.set_function(lambda: self.reconciler.create_slots.waiting(time.time()))
        leader = Gauge("kube_vast_controller_leader", "1 while this replica leads", registry=self.registry)
        leader.set_function(lambda: 1.0 if self.elector.leading.is_set() else 0.0)
        streams = Gauge("kube_vast_kubelet_log_streams", "kubectl logs -f streams being served by the virtual "
                        "node's kubelet API", registry=self.registry)
        server = self.kubelet.server
        streams.set_function(lambda: float(server.api.active_streams) if server is not None else 0.0)
        self.registry.register(MarketCollector(self.poller, self.demand))
        self.registry.register(BidCollector(self.fleet))
        self.registry.register(BudgetCollector(self.budgets))
        if port:
            start_http_server(port, registry=self.registry)

    def _wake_booting(self) -> None:
        """A listing that may show a booted instance: look at the pods waiting for one at once."""
        for key in list(self.reconciler.booting):
            self.queue.add(key)

    def _offers_published(self, snapshot: OfferSnapshot) -> None:
        """New offers: touch the virtual nodes, so that the scheduler tries the pods the extender
        turned away again now (a node update requeues them), not minutes later."""
        if not self.elector.leading.is_set():
            return
        stamp = f"{time.time():.3f}"
        for name in self.settings.virtual_nodes:
            try:
                self.kube.patch_node(name, {"metadata": {"annotations": {OFFERS_ANNOTATION: f"{stamp} {len(snapshot)}"}}})
            except KubeError as exc:
                log.warning("could not mark new offers on node %s: %s", name, exc)

    def _market_changed(self) -> None:
        """Searches paused or resumed: an Event on each virtual node (the condition follows with
        the next heartbeat)."""
        reason, message, warning = market_event(self.poller)
        for name in self.settings.virtual_nodes if self.elector.leading.is_set() else ():
            try:
                node = self.kube.get_node(name)
            except KubeError as exc:
                log.warning("no %s Event on node %s: %s", reason, name, exc)
                continue
            if node is not None:
                self.kube.event(node, reason, message, kind="Node", type_="Warning" if warning else "Normal")
        log.info("virtual node condition %s: %s", MARKET_CONDITION, message)

    def _vast_healthy(self) -> tuple[bool, str]:
        last = self.fleet.last_success
        if last is None or time.time() - last > self.settings.unreachable_after:
            return False, f"Vast unreachable: {self.fleet.last_error or 'no successful call yet'}"
        return True, "kube-vast controller is ready"

    # --- loops ------------------------------------------------------------------------------------

    def _watch_node(self, node: str) -> None:
        selector = f"spec.nodeName={node}"
        while not self.stop.is_set():
            if not self.elector.leading.wait(1.0):
                continue
            try:
                pods, version = self.kube.list_pods(field_selector=selector)
                for pod in pods:
                    self.queue.add(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
                for kind, pod in self.kube.watch_pods(field_selector=selector, resource_version=version,
                                                      timeout_seconds=60):
                    if self.stop.is_set() or not self.elector.leading.is_set():
                        break
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        meta = pod.get("metadata") or {}
                        self.queue.add(f"{meta.get('namespace')}/{meta.get('name')}")
            except KubeError as exc:
                log.warning("watching pods on %s: %s; listing again", node, exc)
                self.stop.wait(1.0)

    def _work(self) -> None:
        while not self.stop.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                if not self.elector.leading.is_set():
                    continue
                namespace, name = key.split("/", 1)
                delay = safe_reconcile(self.reconciler, namespace, name)
                if delay is not None:
                    self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    def _fleet_loop(self) -> None:
        while not self.stop.is_set():
            if self.elector.leading.is_set():
                self.fleet.refresh()
            self.stop.wait(self.fleet.next_wait())

    def run(self) -> int:
        threads = [
            threading.Thread(target=self.elector.run, args=(self.stop,), name="leader", daemon=True),
            threading.Thread(target=self._fleet_loop, name="fleet", daemon=True),
            threading.Thread(target=self.keeper.run, args=(self.stop, self.elector.leading), name="node", daemon=True),
            threading.Thread(target=self.reaper.run, args=(self.stop, self.elector.leading, self.settings.reaper_interval),
                             name="reaper", daemon=True),
            threading.Thread(target=self.budgets.run, args=(self.stop, self.elector.leading), name="budgets", daemon=True),
        ]
        threads += [threading.Thread(target=self._watch_node, args=(n,), name=f"watch-{n}", daemon=True)
                    for n in self.settings.virtual_nodes]
        threads += [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
                    for i in range(self.settings.workers)]
        self.poller.start()
        if self.kubelet.server is not None:
            self.kubelet.server.start()
        for t in threads:
            t.start()
        self.stop.wait()
        log.info("controller stopping")
        self.queue.close()
        self.poller.stop()
        if self.kubelet.server is not None:
            self.kubelet.server.stop()
        # Threads are daemons; give them a moment to finish their step (the leader thread releases
        # the lease so that a standby takes over at once), but never wait out a 60 s pod watch.
        deadline = time.monotonic() + 3.0
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        return 0

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
