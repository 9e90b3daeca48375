"""kube-vast: run Kubernetes GPU pods on rented Vast.ai machines.

This package holds the command line (``kube-vast``) that wires the components together; the
domain lives in :mod:`vastmarket`, the HTTP shells in :mod:`extender` and :mod:`webhooks`, and
everything that talks to the Kubernetes API in :mod:`controller`.
"""

__version__ = "0.1.0"
