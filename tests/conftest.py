"""Registers the control-plane test harness (fixtures and the ``cluster`` marker policy) and the
hosts' own network (``host_network``)."""

pytest_plugins = ["tests.cluster_plugin", "tests.hostnet_plugin"]
