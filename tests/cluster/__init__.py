"""Tests against a real control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager)."""
