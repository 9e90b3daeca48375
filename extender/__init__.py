"""The kube-scheduler extender: filter and prioritize the virtual Vast node(s).

Layers: :mod:`extender.protocol` decodes and encodes the extender wire format (PascalCase JSON,
both the ``NodeNames`` and the full ``Nodes`` forms); :mod:`extender.decisions` is the pure core
(which nodes pass, with which reason, and their scores); :mod:`extender.app` is the thin Flask
shell (routes, errors as JSON, metrics). Nothing here calls Vast or the Kubernetes API: the
offers come from the snapshot the controller publishes.
"""
