"""The sidecar controller — the one place that talks to the Kubernetes API.

It keeps the virtual node(s) registered and heartbeating, publishes the offer snapshot the
extender and webhook read, and for each pod bound to a virtual node rents exactly one Vast
instance, waits for it, health-checks it, publishes the pod status and the EndpointSlices of
the pod's Services, and destroys the instance when the pod goes. Only :mod:`controller.kube`
imports the Kubernetes client; the planning modules are pure functions of plain dicts.
"""
