"""The local cluster: a real Kubernetes control plane on 127.0.0.1, for ``make demo`` and the
``cluster`` tests (nothing here imports ``tests``).

Contract
--------
- Binaries: etcd, kube-apiserver, kube-scheduler and kube-controller-manager at the versions pinned
  in ``tools/versions.env``, built by ``tools/build-control-plane.sh`` into
  ``${KUBE_VAST_CACHE:-~/.cache/kube-vast}/{k8s,etcd,helm}-<version>/bin`` (``KUBE_VAST_BIN_DIR``
  is searched first). :func:`find_binaries` resolves them.
- Fixtures (``tests.cluster_plugin``, registered by ``tests/conftest.py``), session-scoped:
  ``control_plane`` (etcd + kube-apiserver: ``.url``, ``.ca_pem``, ``.kubeconfig_path`` (admin,
  group ``system:masters``), ``.api_client()``, ``.kubeconfig_for(user, groups)``,
  ``.api_client_for(user, groups)``); ``kube_scheduler`` (factory:
  ``kube_scheduler(extender_url=None | "https://127.0.0.1:PORT/prefix", extender_ca_pem=...,
  customize=...)`` renders the repository's ``scheduler-config.yaml`` — or a built-in one with
  profile ``vast-scheduler`` — and runs one scheduler for it); ``controller_manager``.
- Marker policy: ``@pytest.mark.cluster`` tests skip loudly when a binary is missing, and fail
  when ``CI=true``.
- apiserver: ``--authorization-mode=Node,RBAC``, default admission plugins (incl.
  MutatingAdmissionWebhook and ServiceAccount: pods need a ``default`` ServiceAccount in their
  namespace — use :func:`create_namespace`, or run the controller manager),
  ``--service-cluster-ip-range=10.96.0.0/16``. There is no kubelet: pods bound to test Nodes stay
  Pending. The controller manager runs every controller except node-lifecycle, with its own
  identity (bound to cluster-admin, ``--use-service-account-credentials=false``).
- Processes bind 127.0.0.1 only, log to files under the control plane's ``logs_dir`` (kept when a
  test fails or ``KUBE_VAST_KEEP_LOGS=1``), and are stopped (process group SIGTERM, then SIGKILL)
  at fixture teardown, at exit, on SIGTERM/Ctrl-C of pytest, and by the kernel if pytest is
  killed (``PR_SET_PDEATHSIG``). Start them from the main thread.
- Helpers: :func:`wait_for` (poll a condition with a timeout; never sleep a fixed time),
  :func:`create_ready_node`, :func:`create_namespace`, :func:`register_mutating_webhook`,
  :func:`webhook_serving_cert` (cert file, key file, CA PEM for a webhook/extender on 127.0.0.1).
"""

from .binaries import Binaries, cache_root, find_binaries, read_versions, running_in_ci
from .cluster import ControlPlane, SchedulerProcess, write_kubeconfig
from .helpers import (
    DEFAULT_NODE_CAPACITY,
    create_namespace,
    create_ready_node,
    pod_scheduled_condition,
    register_mutating_webhook,
    wait_for,
)
from .pki import CertificateAuthority, ClusterPKI, WebhookCert, webhook_serving_cert
from .processes import ManagedProcess, free_port, stop_all
from .scheduler_config import BUILTIN_CONFIG, SCHEDULER_NAME, load_base_config, render_scheduler_config

__all__ = [
    "BUILTIN_CONFIG",
    "Binaries",
    "CertificateAuthority",
    "ClusterPKI",
    "ControlPlane",
    "DEFAULT_NODE_CAPACITY",
    "ManagedProcess",
    "SCHEDULER_NAME",
    "SchedulerProcess",
    "WebhookCert",
    "cache_root",
    "create_namespace",
    "create_ready_node",
    "find_binaries",
    "free_port",
    "load_base_config",
    "pod_scheduled_condition",
    "read_versions",
    "register_mutating_webhook",
    "render_scheduler_config",
    "running_in_ci",
    "stop_all",
    "wait_for",
    "webhook_serving_cert",
    "write_kubeconfig",
]
