"""The test control plane: etcd + kube-apiserver, and on request kube-scheduler and
kube-controller-manager, all on 127.0.0.1 with generated certificates."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence

import requests
import yaml

from .binaries import Binaries, find_binaries
from .pki import KUBELET_CLIENT_USER, CertFiles, ClusterPKI
from .processes import ManagedProcess, free_port
from .scheduler_config import render_scheduler_config, write_scheduler_config

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Controllers for kube-controller-manager. There is no kubelet: node-lifecycle-controller would mark
# the tests' Node objects NotReady/unreachable (no heartbeats) and taint them, so it is off.
DEFAULT_CONTROLLERS = ("*", "-node-lifecycle-controller")

_START_ATTEMPTS = 3  # a "free" port can be taken between probing and binding: retry with new ports


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, cert: CertFiles, user: str) -> Path:
    """A self-contained kubeconfig (certificate data embedded) for one client certificate."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-vast-test", "cluster": {
            "server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(cert.cert_file.read_bytes()),
            "client-key-data": _b64(cert.key_file.read_bytes())}}],
        "contexts": [{"name": "kube-vast-test", "context": {"cluster": "kube-vast-test", "user": user}}],
        "current-context": "kube-vast-test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class SchedulerProcess:
    """A running kube-scheduler and the rendered configuration it was started with."""

    def __init__(self, process: ManagedProcess, config: dict[str, Any], config_path: Path, port: int,
                 extra_args: tuple[str, ...] = ()):
        self.process = process
        self.extra_args = extra_args
        self.config = config
        self.config_path = config_path
        self.port = port

    def stop(self) -> None:
        self.process.stop()

    def running(self) -> bool:
        return self.process.running()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def __repr__(self) -> str:
        return f"<SchedulerProcess {self.process!r} config={self.config_path}>"


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1 (``start()``), plus optional scheduler/controller-manager.

    Attributes once started: ``url``, ``ca_pem``, ``ca_file``, ``kubeconfig_path`` (admin,
    ``system:masters``), ``pki`` (all certificate files), ``workdir`` (logs, certs, configs).
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        workdir: Path | str | None = None,
        *,
        authorization_mode: str = "Node,RBAC",
        service_cluster_ip_range: str = SERVICE_CLUSTER_IP_RANGE,
        extra_apiserver_args: Sequence[str] = (),
    ):
        self.binaries = binaries or find_binaries()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="kube-vast-cp-"))
        self.authorization_mode = authorization_mode
        self.service_cluster_ip_range = service_cluster_ip_range
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.logs_dir = self.workdir / "logs"
        self.pki: ClusterPKI | None = None
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.schedulers: list[SchedulerProcess] = []
        self.controller_manager: ManagedProcess | None = None
        self.url = ""
        self.etcd_url = ""
        self.kubeconfig_path = self.workdir / "admin.kubeconfig"
        self._kubeconfigs: dict[tuple[str, tuple[str, ...]], Path] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self.startup_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90.0) -> "ControlPlane":
        t0 = time.monotonic()
        self.pki = ClusterPKI.create(self.workdir / "pki")
        self.startup_seconds["pki"] = time.monotonic() - t0
        try:
            t = time.monotonic()
            self._start_etcd(timeout)
            self.startup_seconds["etcd"] = time.monotonic() - t
            t = time.monotonic()
            self._start_apiserver(timeout)
            self.startup_seconds["kube-apiserver"] = time.monotonic() - t
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = time.monotonic() - t0
        return self

    def _next_log(self, name: str) -> Path:
        self._seq += 1
        return self.logs_dir / f"{self._seq:02d}-{name}.log"

    def _start_etcd(self, timeout: float) -> None:
        for attempt in range(_START_ATTEMPTS):
            client, peer = free_port(), free_port()
            data = self.workdir / f"etcd-data-{attempt}"
            p = ManagedProcess("etcd", [
                self.binaries.etcd,
                "--name=kube-vast-test",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=kube-vast-test=http://127.0.0.1:{peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ], self._next_log("etcd")).start()
            url = f"http://127.0.0.1:{client}"

            def healthy() -> bool:
                r = requests.get(f"{url}/health", timeout=2)
                return r.status_code == 200 and r.json().get("health") == "true"

            try:
                p.wait_until(healthy, timeout=timeout, what="report /health")
            except BaseException as exc:  # also Ctrl-C: never leave a half-started process
                p.stop()
                if isinstance(exc, Exception) and attempt + 1 < _START_ATTEMPTS and "address already in use" in p.log_tail(60):
                    continue
                raise
            self.etcd, self.etcd_url = p, url
            return

    def _start_apiserver(self, timeout: float) -> None:
        assert self.pki is not None
        pki = self.pki
        for attempt in range(_START_ATTEMPTS):
            port = free_port()
            p = ManagedProcess("kube-apiserver", [
                self.binaries.kube_apiserver,
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.apiserver.cert_file}",
                f"--tls-private-key-file={pki.apiserver.key_file}",
                f"--client-ca-file={pki.ca_file}",
                f"--authorization-mode={self.authorization_mode}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_pub_file}",
                f"--service-account-signing-key-file={pki.service_account_key_file}",
                f"--service-cluster-ip-range={self.service_cluster_ip_range}",
                f"--requestheader-client-ca-file={pki.front_proxy_ca_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_client.cert_file}",
                f"--proxy-client-key-file={pki.front_proxy_client.key_file}",
                # What it presents to kubelets. Their serving certificates are not verified (no
                # --kubelet-certificate-authority), as on a kubeadm cluster.
                f"--kubelet-client-certificate={pki.kubelet_client.cert_file}",
                f"--kubelet-client-key={pki.kubelet_client.key_file}",
                "--allow-privileged=true",
                # No kubelet: the 'kubernetes' Service endpoints (127.0.0.1) are not reconciled.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
                *self.extra_apiserver_args,
            ], self._next_log("kube-apiserver")).start()
            self.url = f"https://127.0.0.1:{port}"
            try:
                p.wait_until(self._apiserver_ready, timeout=timeout, what="report /readyz")
                p.wait_until(self._bootstrap_done, timeout=timeout, what="create its default RBAC and namespaces")
            except BaseException as exc:  # also Ctrl-C: never leave a half-started process
                p.stop()
                if isinstance(exc, Exception) and attempt + 1 < _START_ATTEMPTS and "address already in use" in p.log_tail(80):
                    continue
                raise
            self.apiserver = p
            write_kubeconfig(self.kubeconfig_path, server=self.url, ca_pem=pki.ca_pem, cert=pki.admin,
                             user="kube-vast-admin")
            # As kubeadm does: the apiserver's kubelet client may use every kubelet API.
            self._bind_cluster_role("kube-vast-test:apiserver-kubelet-client", KUBELET_CLIENT_USER,
                                    role="system:kubelet-api-admin")
            return

    def _get(self, path: str) -> requests.Response:
        assert self.pki is not None
        return requests.get(
            self.url + path,
            cert=(str(self.pki.admin.cert_file), str(self.pki.admin.key_file)),
            verify=str(self.pki.ca_file),
            timeout=5,
        )

    def _apiserver_ready(self) -> bool:
        return self._get("/readyz").status_code == 200

    def _bootstrap_done(self) -> bool:
        paths = (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:kube-scheduler",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:kube-scheduler",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:kube-controller-manager",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin",
            "/api/v1/namespaces/default",
            "/api/v1/namespaces/kube-system",
        )
        return all(self._get(p).status_code == 200 for p in paths)

    def stop(self) -> None:
        """Stop every process of this control plane (newest first); idempotent."""
        for s in reversed(self.schedulers):
            s.stop()
        if self.controller_manager is not None:
            self.controller_manager.stop()
        if self.apiserver is not None:
            self.apiserver.stop()
        if self.etcd is not None:
            self.etcd.stop()

    def cleanup(self) -> None:
        """Remove the work directory (only if this object created it)."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def processes(self) -> list[ManagedProcess]:
        procs = [p for p in (self.etcd, self.apiserver, self.controller_manager) if p is not None]
        return procs + [s.process for s in self.schedulers]

    def check_alive(self) -> None:
        """Raise :class:`~devcluster.processes.ProcessDied` (with the log tail) if a process died."""
        for p in self.processes():
            if not p.stopped:
                p.check_alive()

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients
    @property
    def ca_pem(self) -> bytes:
        assert self.pki is not None
        return self.pki.ca_pem

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None
        return self.pki.ca_file

    def _configuration(self, cert: CertFiles) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.cert_file = str(cert.cert_file)
        cfg.key_file = str(cert.key_file)
        cfg.verify_ssl = True
        return cfg

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for the admin user (group ``system:masters``)."""
        from kubernetes import client

        assert self.pki is not None
        return client.ApiClient(self._configuration(self.pki.admin))

    def client_cert_for(self, user: str, groups: Sequence[str] = ()) -> CertFiles:
        assert self.pki is not None
        return self.pki.client_cert(user, tuple(groups))

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig file authenticating as ``user`` in ``groups`` (client certificate)."""
        key = (user, tuple(groups))
        with self._lock:
            if key not in self._kubeconfigs:
                cert = self.client_cert_for(user, groups)
                path = self.workdir / "kubeconfigs" / f"{cert.cert_file.stem}.kubeconfig"
                self._kubeconfigs[key] = write_kubeconfig(path, server=self.url, ca_pem=self.ca_pem,
                                                          cert=cert, user=user)
            return self._kubeconfigs[key]

    def api_client_for(self, user: str, groups: Sequence[str] = ()) -> Any:
        """A new ``kubernetes.client.ApiClient`` authenticating as ``user`` in ``groups``."""
        from kubernetes import client

        return client.ApiClient(self._configuration(self.client_cert_for(user, groups)))

    # ------------------------------------------------------------------ kube-scheduler
    def render_scheduler_config(
        self,
        extender_url: str | None = None,
        *,
        extender_ca_pem: bytes | str | None = None,
        base: dict[str, Any] | Path | str | None = None,
        customize: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The scheduler config this control plane would start (see ``scheduler_config``)."""
        assert self.pki is not None
        kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        if not kubeconfig.exists():
            write_kubeconfig(kubeconfig, server=self.url, ca_pem=self.ca_pem, cert=self.pki.scheduler,
                             user="system:kube-scheduler")
        return render_scheduler_config(kubeconfig=kubeconfig, extender_url=extender_url,
                                       extender_ca_pem=extender_ca_pem, base=base, customize=customize)

    def start_scheduler(
        self,
        extender_url: str | None = None,
        *,
        extender_ca_pem: bytes | str | None = None,
        base: dict[str, Any] | Path | str | None = None,
        customize: Callable[[dict[str, Any]], None] | None = None,
        config: dict[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> SchedulerProcess:
        """Start a kube-scheduler (identity ``system:kube-scheduler``) from a rendered config.

        ``config`` (an already rendered dict) wins over ``extender_url``/``base``/``customize``.
        Waits for its ``/readyz``. The caller stops it (``.stop()``) or leaves it to ``stop()``.
        """
        cfg = config if config is not None else self.render_scheduler_config(
            extender_url, extender_ca_pem=extender_ca_pem, base=base, customize=customize)
        kubeconfig = Path(cfg["clientConnection"]["kubeconfig"])
        last: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            log = self._next_log("kube-scheduler")
            path = write_scheduler_config(log.with_suffix(".config.yaml"), cfg)
            p = ManagedProcess("kube-scheduler", [
                self.binaries.kube_scheduler,
                f"--config={path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--v=2",
                *extra_args,
            ], log).start()
            try:
                p.wait_until(lambda: _healthy(f"https://127.0.0.1:{port}/readyz"), timeout=timeout,
                             what="report /readyz")
            except Exception as e:
                p.stop()
                last = e
                if "address already in use" in p.log_tail(60):
                    continue
                raise
            s = SchedulerProcess(p, cfg, path, port, tuple(extra_args))
            self.schedulers.append(s)
            return s
        assert last is not None
        raise last

    # ------------------------------------------------------------------ kube-controller-manager
    def start_controller_manager(
        self,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        *,
        extra_args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> ManagedProcess:
        """Start kube-controller-manager (identity ``system:kube-controller-manager``).

        It runs with ``--use-service-account-credentials=false``: every controller uses the
        controller-manager's own identity, which is therefore bound to ``cluster-admin``.
        """
        assert self.pki is not None
        if self.controller_manager is not None and self.controller_manager.running():
            return self.controller_manager
        self._bind_cluster_role("kube-vast-test:kube-controller-manager", "system:kube-controller-manager")
        kubeconfig = write_kubeconfig(self.workdir / "kube-controller-manager.kubeconfig", server=self.url,
                                      ca_pem=self.ca_pem, cert=self.pki.controller_manager,
                                      user="system:kube-controller-manager")
        for attempt in range(_START_ATTEMPTS):
            port = free_port()
            p = ManagedProcess("kube-controller-manager", [
                self.binaries.kube_controller_manager,
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--controllers={','.join(controllers)}",
                f"--root-ca-file={self.pki.ca_file}",
                f"--service-account-private-key-file={self.pki.service_account_key_file}",
                f"--cluster-signing-cert-file={self.pki.ca_file}",
                f"--cluster-signing-key-file={self.pki.ca_key_file}",
                f"--service-cluster-ip-range={self.service_cluster_ip_range}",
                "--v=1",
                *extra_args,
            ], self._next_log("kube-controller-manager")).start()
            try:
                p.wait_until(lambda: _healthy(f"https://127.0.0.1:{port}/healthz"), timeout=timeout,
                             what="report /healthz")
            except BaseException as exc:  # also Ctrl-C: never leave a half-started process
                p.stop()
                if isinstance(exc, Exception) and attempt + 1 < _START_ATTEMPTS and "address already in use" in p.log_tail(60):
                    continue
                raise
            self.controller_manager = p
            return p
        raise AssertionError("unreachable")

    def _bind_cluster_role(self, binding: str, user: str, *, role: str = "cluster-admin") -> None:
        assert self.pki is not None
        body = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        r = requests.post(
            self.url + "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            cert=(str(self.pki.admin.cert_file), str(self.pki.admin.key_file)),
            verify=str(self.pki.ca_file),
            timeout=10,
        )
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating ClusterRoleBinding {binding}: HTTP {r.status_code} {r.text}")


def _healthy(url: str) -> bool:
    # Components serve /healthz and /readyz to anyone (--authorization-always-allow-paths); their
    # serving certificate is self-signed, hence verify=False.
    import urllib3

    with _quiet_insecure_warning(urllib3):
        return requests.get(url, verify=False, timeout=2).status_code == 200


class _quiet_insecure_warning:
    def __init__(self, urllib3: Any):
        self._cls = urllib3.exceptions.InsecureRequestWarning

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", self._cls)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._ctx.__exit__(exc_type, exc, tb)


def keep_logs_requested() -> bool:
    return os.environ.get("KUBE_VAST_KEEP_LOGS", "").strip().lower() in ("1", "true", "yes")
