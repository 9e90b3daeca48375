"""HTTP serving shared by the extender and the webhook: the in-process gunicorn runner and the
snapshot follower's metrics. Below both services, above the domain."""
