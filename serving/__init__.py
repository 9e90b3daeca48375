"""HTTP serving shared by the extender and the webhook: the in-process gunicorn runner and the
snapshot follower's metrics; and the standard library's HTTP server bound without a name lookup
(:mod:`serving.http_server`), under the simulator and the controller's kubelet API. Below the
services and the simulator, above the domain."""
