"""Registers the control-plane test harness (fixtures and the ``cluster`` marker policy)."""

pytest_plugins = ["tests.cluster_plugin"]
