"""kube-vast tests."""
