"""``make demo``: the whole kube-vast flow on this machine, without a Vast account or a cluster.

A local control plane (``devcluster``: etcd, kube-apiserver, kube-controller-manager, and the
``vast-scheduler`` kube-scheduler from ``scheduler-config.yaml``), the Vast marketplace simulator
and the three kube-vast components as real processes; the june example (``june.yaml``) applied;
the selection log, the pod on ``vast-gpu-node-1``, the instance, the endpoint mapping lines and an
answered request printed as they happen; then everything cleaned up, also on Ctrl-C. ``--keep``
leaves it running for ``kubectl`` until Ctrl-C. Entry point: ``python -m demo`` (from the
repository root; it imports ``devcluster``, which is not installed with the package).
"""
