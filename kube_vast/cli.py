"""``kube-vast`` — the command line. Subcommands decode flags, call the domain, print.

Exit codes: 0 success; 1 ``offers`` found no matching offer; 2 bad input (flags, config, pod
file, a pod that does not exist) or a Vast or Kubernetes error, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from vastmarket.client import VastClient, broad_query
from vastmarket.config import SelectionConfig, apply_env, load_config
from vastmarket.errors import ConfigError, InvalidPod, KubeVastError, RequirementError
from vastmarket.explain import explanation, selection_log
from vastmarket.offers import ParsedOffers, parse_search_response
from vastmarket.pods import check_pod
from vastmarket.requirements import requirements_for
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot, SnapshotFile

# flag dest → the annotation it stands for (flags and annotations share one validator)
FLAG_OVERRIDES = {
    "gpu_type": ("--gpu-type", "vast.ai/gpu-type"),
    "gpu_fallbacks": ("--gpu-fallbacks", "vast.ai/gpu-fallbacks"),
    "max_price": ("--max-price", "vast.ai/price-max"),
    "min_gpu_memory": ("--min-gpu-memory", "vast.ai/min-gpu-memory"),
    "min_reliability": ("--min-reliability", "vast.ai/min-reliability"),
    "min_download": ("--min-download", "vast.ai/min-download-mbps"),
    "location": ("--location", "vast.ai/locations"),
    "disk": ("--disk", "vast.ai/disk"),
}


class UsageError(KubeVastError):
    """Wrong use of the command line."""


def _add_offer_flags(p: argparse.ArgumentParser) -> None:
    req = p.add_argument_group("requirements (override --config, VAST_* and --pod)")
    req.add_argument("--gpu-type", metavar="GPU[,GPU...]", help="allowed GPU models, first choice first (RTX3060, RTX 4090, A4000)")
    req.add_argument("--gpu-fallbacks", metavar="GPU[,GPU...]", help="fallback GPU models after --gpu-type")
    req.add_argument("--max-price", metavar="USD", help="maximum $/hour (dph_total), e.g. 0.50")
    req.add_argument("--min-gpu-memory", metavar="GB", help="minimum VRAM per GPU, e.g. 12 or 12GB")
    req.add_argument("--min-reliability", metavar="R", help="minimum host reliability, 0.95 or 95%%")
    req.add_argument("--min-download", metavar="MBPS", help="minimum download bandwidth in Mbps")
    req.add_argument("--location", metavar="LOC[,LOC...]", help="allowed locations in order: US-CA, US, EU, ASIA, DE…")
    req.add_argument("--disk", metavar="GB", help="disk to allocate (and require) in GB")
    req.add_argument("--num-gpus", type=int, metavar="N", help="GPUs per instance (default: from --pod, else 1)")
    req.add_argument("--ports", type=int, metavar="N", help="direct ports needed (default: from --pod)")
    req.add_argument("--verified-only", action="store_true", help="only verified hosts")
    src = p.add_argument_group("where offers come from (one of)")
    src.add_argument("--api-url", metavar="URL", help="a Vast API (or simulator) URL; key from VAST_API_KEY / VAST_API_KEY_FILE")
    src.add_argument("--offers-file", metavar="FILE", help='a saved search response {"offers": [...]}')
    p.add_argument("--config", metavar="FILE", help="selection config (kube-vast.yaml)")
    p.add_argument("--pod", metavar="FILE", help="a pod manifest (YAML or JSON); its resources and vast.ai/* annotations count")
    p.add_argument("--top", type=int, default=3, metavar="N", help="how many offers to show (default 3)")
    p.add_argument("--explain", action="store_true", help="show rejection counts and every score term")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kube-vast", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("KUBE_VAST_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    offers = sub.add_parser("offers", help="rank live (or saved) Vast offers against requirements")
    _add_offer_flags(offers)

    config = sub.add_parser("config", help="selection config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file (and the VAST_* environment)")
    check.add_argument("file")

    ext = sub.add_parser("extender", help="run the kube-scheduler extender (gunicorn)")
    ext.add_argument("--host", default="0.0.0.0")
    ext.add_argument("--port", type=int, default=8888)
    ext.add_argument("--workers", type=int, default=1)
    ext.add_argument("--threads", type=int, default=4)
    ext.add_argument("--snapshot", help="offer snapshot file the controller publishes (KUBE_VAST_SNAPSHOT)")
    ext.add_argument("--config", help="selection config file (KUBE_VAST_CONFIG)")
    ext.add_argument("--virtual-node", action="append", dest="virtual_nodes", metavar="NAME",
                     help="name of a virtual Vast node (repeatable; KUBE_VAST_VIRTUAL_NODES, default vast-gpu-node-1)")
    ext.add_argument("--virtual-node-labels", metavar="K=V[,K=V]",
                     help="labels that also mark a virtual node (KUBE_VAST_VIRTUAL_NODE_LABELS, default vast.ai/virtual-node=true)")
    ext.add_argument("--burst-policy", choices=["local-first", "cost-first"], help="KUBE_VAST_BURST_POLICY")
    ext.add_argument("--max-snapshot-age", type=float, metavar="SECONDS", help="KUBE_VAST_MAX_SNAPSHOT_AGE")

    ctl = sub.add_parser("controller", help="run the sidecar controller (virtual node, rentals, endpoints)")
    ctl.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    ctl.add_argument("--namespace", help="namespace of the leader-election Lease (KUBE_VAST_NAMESPACE)")
    ctl.add_argument("--cluster-id", help="id in instance labels (KUBE_VAST_CLUSTER_ID; default: from kube-system's UID)")
    ctl.add_argument("--virtual-node", action="append", dest="virtual_nodes", metavar="NAME",
                     help="virtual node name (repeatable; KUBE_VAST_VIRTUAL_NODES; default vast-gpu-node-1)")
    ctl.add_argument("--snapshot", help="where to publish the offer snapshot (KUBE_VAST_SNAPSHOT)")
    ctl.add_argument("--config", help="selection config file (KUBE_VAST_CONFIG)")
    ctl.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    for flag, dest in (("--poll-interval", "poll_interval"), ("--refresh-interval", "refresh_interval"),
                       ("--demand-interval", "demand_interval"), ("--fleet-interval", "fleet_interval"),
                       ("--resync", "resync"), ("--boot-timeout", "boot_timeout"),
                       ("--reaper-grace", "reaper_grace"), ("--reaper-interval", "reaper_interval"),
                       ("--lease-seconds", "lease_seconds"), ("--renew-every", "renew_every"),
                       ("--unreachable-after", "unreachable_after")):
        ctl.add_argument(flag, dest=dest, type=float, metavar="SECONDS")
    ctl.add_argument("--reaper-dry-run", action="store_true", default=None, help="report orphans, destroy nothing")
    ctl.add_argument("--identity", help="leader-election identity (default: hostname-pid)")

    hook = sub.add_parser("webhook", help="run the mutating admission webhook (gunicorn, HTTPS only)")
    hook.add_argument("--host", default="0.0.0.0")
    hook.add_argument("--port", type=int, default=8443)
    hook.add_argument("--workers", type=int, default=1)
    hook.add_argument("--threads", type=int, default=4)
    hook.add_argument("--tls-cert", metavar="FILE", help="serving certificate, reloaded when renewed (KUBE_VAST_TLS_CERT)")
    hook.add_argument("--tls-key", metavar="FILE", help="its private key (KUBE_VAST_TLS_KEY)")
    hook.add_argument("--snapshot", help="offer snapshot file the controller publishes (KUBE_VAST_SNAPSHOT)")
    hook.add_argument("--config", help="selection config file (KUBE_VAST_CONFIG)")
    hook.add_argument("--release-namespace", metavar="NS",
                      help="the release's own namespace, never touched like kube-system (KUBE_VAST_NAMESPACE)")
    hook.add_argument("--scheduler-name", metavar="NAME",
                      help="schedulerName given to opted-in pods (KUBE_VAST_SCHEDULER_NAME, default vast-scheduler)")
    hook.add_argument("--keep-scheduler-name", action="store_true",
                      help="never set spec.schedulerName (KUBE_VAST_SET_SCHEDULER_NAME=false)")
    hook.add_argument("--deny-without-offer", action="store_true",
                      help="deny pods no offer matches instead of admitting them with vast.ai/selection-error "
                           "(KUBE_VAST_DENY_WITHOUT_OFFER)")
    hook.add_argument("--max-snapshot-age", type=float, metavar="SECONDS", help="KUBE_VAST_MAX_SNAPSHOT_AGE")
    hook.add_argument("--virtual-node-taint", metavar="KEY=VALUE:EFFECT",
                      help="the taint to tolerate (KUBE_VAST_VIRTUAL_NODE_TAINT, "
                           "default virtual-kubelet.io/provider=vast:NoSchedule)")

    why = sub.add_parser("explain", help="why a pod got its offer (or none), and what the controller did since")
    why.add_argument("pod", metavar="POD", help="the pod's name")
    why.add_argument("-n", "--namespace", default="default", help="the pod's namespace (default: default)")
    why.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    why.add_argument("--config", metavar="FILE", help="selection config (kube-vast.yaml) the cluster runs with")
    offers_from = why.add_mutually_exclusive_group()
    offers_from.add_argument("--snapshot", metavar="FILE", help="re-rank the offers of this snapshot file")
    offers_from.add_argument("--api-url", metavar="URL",
                             help="re-rank a live search of this Vast API (or simulator); default VAST_API_URL")
    why.add_argument("--top", type=int, default=3, metavar="N", help="how many offers to show (default 3)")
    why.add_argument("--json", action="store_true", help="machine-readable output")

    st = sub.add_parser("status", help="this cluster's Vast instances, their pods, prices, health and $/hour")
    st.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    st.add_argument("--api-url", metavar="URL", help="the Vast API (or simulator); default VAST_API_URL")
    st.add_argument("--cluster-id", help="as the controller's (KUBE_VAST_CLUSTER_ID; default: from kube-system's UID)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--by-namespace", action="store_true",
                    help="per namespace: instances, $/hour, pods waiting or held, its VastBudgets and spend")

    sim = sub.add_parser("simulator", help="run the local Vast.ai marketplace simulator")
    from vastsim import cli as simulator_cli
    simulator_cli.add_arguments(sim)
    return parser


def load_selection_config(path: str | None, environ: Mapping[str, str]) -> SelectionConfig:
    config = load_config(path) if path else SelectionConfig()
    return apply_env(config, environ)


def _load_manifest(path: str) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--pod {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--pod {path}: not YAML or JSON: {exc}") from None
    if not isinstance(data, Mapping) or data.get("kind", "Pod") != "Pod":
        raise UsageError(f"--pod {path}: expected a Pod manifest")
    try:
        return check_pod(data)
    except InvalidPod as exc:
        raise UsageError(f"--pod {path}: {exc}") from None


def _flag_annotations(args: argparse.Namespace) -> dict[str, str]:
    return {annotation: getattr(args, dest) for dest, (_, annotation) in FLAG_OVERRIDES.items()
            if getattr(args, dest) is not None}


def requirements_from_args(args: argparse.Namespace, config: SelectionConfig) -> Any:
    pod = _load_manifest(args.pod) if args.pod else None
    req = requirements_for(config, pod)
    flags = _flag_annotations(args)
    if flags:
        try:
            req = requirements_for(config, pod, annotations={**_pod_annotations(pod), **flags})
        except RequirementError as exc:
            names = {annotation: flag for flag, annotation in FLAG_OVERRIDES.values()}
            if exc.field in names:
                raise RequirementError(names[exc.field], exc.value, exc.accepted) from None
            raise
    if args.num_gpus is not None:
        if args.num_gpus < 1:
            raise RequirementError("--num-gpus", args.num_gpus, "a whole number of at least 1")
        req = replace(req, num_gpus=args.num_gpus)
    if args.ports is not None:
        if args.ports < 0:
            raise RequirementError("--ports", args.ports, "a whole number of at least 0")
        req = replace(req, direct_ports=args.ports)
    if args.verified_only:
        req = replace(req, verified_only=True)
    return req


def _pod_annotations(pod: Mapping[str, Any] | None) -> dict[str, Any]:
    if not pod:
        return {}
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    return dict(annotations) if isinstance(annotations, Mapping) else {}


def fetch_offers(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[ParsedOffers, str]:
    if args.offers_file and args.api_url:
        raise UsageError("give either --api-url or --offers-file, not both")
    if args.offers_file:
        try:
            body = json.loads(Path(args.offers_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--offers-file {args.offers_file}: cannot read: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"--offers-file {args.offers_file}: not JSON: {exc}") from None
        try:
            return parse_search_response(body), args.offers_file
        except KubeVastError as exc:
            raise UsageError(f"--offers-file {args.offers_file}: {exc}") from None
    url = args.api_url or environ.get("VAST_API_URL")
    if not url:
        raise UsageError("no offer source: give --api-url URL (e.g. the simulator's) or --offers-file FILE")
    env = {**environ, "VAST_API_URL": url}
    client = VastClient.from_environment(env)
    if "console.vast.ai" in url or "cloud.vast.ai" in url:
        if env.get("VAST_API_KEY", "").strip() == "" and not env.get("VAST_API_KEY_FILE"):
            raise ConfigError("the real Vast API needs a key: set VAST_API_KEY or VAST_API_KEY_FILE")
    try:
        return client.search_offers(broad_query(), limit=10_000), url
    finally:
        client.close()


def cmd_offers(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    config = load_selection_config(args.config, environ)
    req = requirements_from_args(args, config)
    parsed, source = fetch_offers(args, environ)
    snapshot = OfferSnapshot(parsed.offers, taken_at=0.0, source=source)
    ranking = snapshot.rank(req, ScoringPolicy.from_config(config))
    if args.json:
        out = explanation(ranking, top=args.top)
        out["dropped_malformed"] = parsed.dropped
        print(json.dumps(out, indent=2))
    else:
        for line in selection_log(ranking, top=args.top):
            print(line)
        if args.explain:
            _print_explanation(ranking, args.top, parsed.dropped)
    return 0 if ranking.ranked else 1


def _print_explanation(ranking: Any, top: int, dropped: int) -> None:
    print()
    print(f"Requirements: {ranking.requirements.describe()}")
    print(f"Offers seen: {ranking.seen} (malformed records dropped: {dropped}); matching: {ranking.passed}")
    if ranking.rejections:
        print("Rejected (an offer failing several requirements counts under each):")
        for phrase in ranking.rejection_phrases():
            print(f"  {phrase}")
    for s in ranking.top(top):
        terms = "  ".join(f"{k}={v:.2f}" for k, v in s.terms.items())
        mods = "".join(f"  {name}{add:+.2f}" for name, add in s.modifiers)
        print(f"Offer {s.offer.id}: score {s.score:.3f} = {terms}{mods}")


def cmd_config_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    config = load_selection_config(args.file, environ)
    d = config.defaults
    print(f"{args.file}: OK")
    print(f"  GPU types: {', '.join(d.gpu_types) or 'any'}; min VRAM {d.min_gpu_memory_gb:g} GB; "
          f"max ${d.max_price:.2f}/h; reliability ≥ {d.min_reliability:.0%}; "
          f"download ≥ {d.min_download_mbps:g} Mbps; locations: {', '.join(d.locations) or 'any'}")
    w = config.weights.normalised()
    print("  weights: " + ", ".join(f"{k} {v:.2f}" for k, v in w.as_dict().items()))
    print(f"  budget: ${config.budget.max_total_price_per_hour:.2f}/h, {config.budget.max_instances} instances")
    i = config.interruptible
    who = "every pod" if i.default else ("namespaces " + ", ".join(sorted(i.namespaces)) if i.namespaces
                                         else "pods that ask (vast.ai/interruptible)")
    print(f"  interruptible: {who}; bid {i.bid_margin:.0%} over min_bid; when outbid {i.policy.value}, "
          f"moving after {i.move_after_seconds:g}s")
    return 0


def cmd_extender(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from extender.app import create_app
    from extender.settings import settings_from
    from vastmarket.snapshot import SnapshotFile, SnapshotFollower

    from serving.runner import serve

    settings = settings_from(
        environ, snapshot_path=Path(args.snapshot) if args.snapshot else None,
        config_path=Path(args.config) if args.config else None, burst_policy=args.burst_policy,
        max_snapshot_age=args.max_snapshot_age, virtual_node_names=args.virtual_nodes,
        virtual_node_labels=args.virtual_node_labels,
    )
    config_path = str(settings.config_path) if settings.config_path else None
    config = load_selection_config(config_path, environ)  # refuse to start on a bad config

    def factory() -> Any:
        follower = SnapshotFollower(SnapshotFile(settings.snapshot_path))
        follower.start()
        return create_app(settings, config=config, snapshots=lambda: follower.current)

    logging.getLogger("kube_vast").info("extender listening on %s:%d (snapshot %s)", args.host, args.port,
                                        settings.snapshot_path)
    serve(factory, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
          name="kube-vast-extender")
    return 0


def cmd_controller(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from controller.main import Controller
    from controller.settings import settings_from as controller_settings

    overrides = {k: getattr(args, k) for k in (
        "kubeconfig", "namespace", "cluster_id", "virtual_nodes", "poll_interval", "refresh_interval",
        "demand_interval", "fleet_interval", "resync",
        "boot_timeout", "reaper_grace", "reaper_interval", "lease_seconds", "renew_every", "reaper_dry_run",
        "identity", "unreachable_after")}
    overrides["snapshot_path"] = Path(args.snapshot) if args.snapshot else None
    overrides["config_path"] = Path(args.config) if args.config else None
    settings = controller_settings(environ, **overrides)
    config = load_selection_config(str(settings.config_path) if settings.config_path else None, environ)
    controller = Controller(settings, config, environ, metrics_port=args.metrics_port)
    controller.install_signal_handlers()
    return controller.run()


def cmd_webhook(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from vastmarket.snapshot import SnapshotFile, SnapshotFollower
    import time

    from vastmarket.budgets import BudgetStateFile
    from webhooks.app import create_app
    from webhooks.budgets import BudgetTracker
    from webhooks.settings import settings_from
    from webhooks.tls import ReloadingCertificate

    settings = settings_from(
        environ, snapshot_path=args.snapshot, config_path=args.config, tls_cert=args.tls_cert,
        tls_key=args.tls_key, release_namespace=args.release_namespace, scheduler_name=args.scheduler_name,
        keep_scheduler_name=args.keep_scheduler_name, deny_without_offer=args.deny_without_offer,
        max_snapshot_age=args.max_snapshot_age, taint=args.virtual_node_taint,
    )
    cert, key = settings.require_tls()
    tls = ReloadingCertificate(cert, key)  # refuse to start on an unreadable or mismatched pair
    config_path = str(settings.config_path) if settings.config_path else None
    config = load_selection_config(config_path, environ)  # refuse to start on a bad config

    def factory() -> Any:
        follower = SnapshotFollower(SnapshotFile(settings.snapshot_path))
        follower.start()
        budgets = BudgetTracker(BudgetStateFile.beside(settings.snapshot_path), clock=time.time)
        return create_app(settings, config=config, snapshots=lambda: follower.current, budgets=budgets)

    logging.getLogger("kube_vast").info("webhook listening on https://%s:%d (snapshot %s, cert %s)",
                                        args.host, args.port, settings.snapshot_path, cert)
    from serving.runner import serve

    serve(factory, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
          certfile=str(tls.cert), keyfile=str(tls.key), ssl_context=tls.gunicorn_hook(), name="kube-vast-webhook")
    return 0


def _vast_client(url: str | None, environ: Mapping[str, str]) -> VastClient:
    url = url or environ.get("VAST_API_URL")
    if not url:
        raise UsageError("no Vast API: give --api-url URL (e.g. the simulator's) or set VAST_API_URL")
    env = {**environ, "VAST_API_URL": url}
    if ("console.vast.ai" in url or "cloud.vast.ai" in url) and not (
            env.get("VAST_API_KEY", "").strip() or env.get("VAST_API_KEY_FILE")):
        raise ConfigError("the real Vast API needs a key: set VAST_API_KEY or VAST_API_KEY_FILE")
    return VastClient.from_environment(env)


def _kube_gateway(kubeconfig: str | None) -> Any:
    """The controller's Kubernetes gateway for a command-line user (kubeconfig, else in-cluster)."""
    from controller.kube import KubeGateway, load_api_client

    if kubeconfig and not Path(kubeconfig).is_file():
        raise UsageError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return KubeGateway(load_api_client(kubeconfig))
    except Exception as exc:  # the client raises its own ConfigException, OSError, ValueError...
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise UsageError(f"cannot load the Kubernetes configuration ({where}): {exc}") from None


def cmd_explain(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    import time

    from . import explain

    if args.top < 1:
        raise UsageError("--top must be at least 1")
    config = load_selection_config(args.config, environ)
    kube = _kube_gateway(args.kubeconfig)
    try:
        pod, events = explain.gather(kube, args.namespace, args.pod)
    except explain.PodNotFound as exc:
        raise UsageError(str(exc)) from None
    services = explain.gather_services(kube, args.namespace)
    offers = None
    if args.snapshot:
        snapshot = SnapshotFile(args.snapshot).load()
        offers = explain.Offers(snapshot, f"snapshot {args.snapshot}", snapshot.age(time.time()))
    elif args.api_url or environ.get("VAST_API_URL"):
        client = _vast_client(args.api_url, environ)
        try:
            parsed = client.search_offers(broad_query(), limit=10_000)
        finally:
            client.close()
        offers = explain.Offers(OfferSnapshot(parsed.offers, taken_at=time.time()),
                                f"live search of {client.base_url}", 0.0)
    report = explain.explain_pod(pod, events, config=config, offers=offers, top=args.top, services=services)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("\n".join(explain.render_text(report)))
    return 0


def cmd_status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from controller.main import derive_cluster_id

    from . import status

    kube = _kube_gateway(args.kubeconfig)
    cluster_id = args.cluster_id or environ.get("KUBE_VAST_CLUSTER_ID", "").strip() or derive_cluster_id(kube)
    client = _vast_client(args.api_url, environ)
    try:
        instances, pods = status.gather(kube, client)
    finally:
        client.close()
    fleet = replace(status.fleet_status(instances, pods, cluster_id),
                    market=status.market_notes(status.virtual_nodes(kube)))
    if args.by_namespace:
        import time

        from . import budget_status

        budgets = kube.list_vast_budgets()
        rows = budget_status.by_namespace(fleet, pods, budgets, now=time.time())
        if args.json:
            print(json.dumps(budget_status.as_json(rows, budgets_installed=budgets is not None), indent=2))
        else:
            print("\n".join(budget_status.render_text(rows, budgets_installed=budgets is not None)))
        return 0
    if args.json:
        print(json.dumps(status.as_json(fleet, source=client.base_url), indent=2))
    else:
        print("\n".join(status.render_text(fleet, source=client.base_url)))
    return 0


def cmd_simulator(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from vastsim import cli as simulator_cli

    return simulator_cli.run(args)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    commands = {
        "offers": cmd_offers, "config": cmd_config_check, "extender": cmd_extender,
        "controller": cmd_controller, "webhook": cmd_webhook, "explain": cmd_explain,
        "status": cmd_status, "simulator": cmd_simulator,
    }
    try:
        return commands[args.command](args, environ)
    except KubeVastError as exc:
        print(f"kube-vast: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
