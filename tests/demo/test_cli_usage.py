"""``kube-vast explain`` and ``kube-vast status``: bad input is a clear message and exit code 2,
before anything is contacted."""

from __future__ import annotations

import pytest

from kube_vast.cli import main


@pytest.mark.parametrize("argv, environ, message", [
    (["explain", "june", "--kubeconfig", "/nonexistent/kubeconfig"], {}, "--kubeconfig /nonexistent/kubeconfig: no such file"),
    (["status", "--kubeconfig", "/nonexistent/kubeconfig"], {}, "--kubeconfig /nonexistent/kubeconfig: no such file"),
    (["explain", "june", "--top", "0"], {}, "--top must be at least 1"),
    (["explain", "june", "--config", "/nonexistent/kube-vast.yaml"], {}, "cannot read the config file"),
    (["explain", "june", "--config", "/dev/null"], {"VAST_MAX_PRICE_PER_HOUR": "free"}, "VAST_MAX_PRICE_PER_HOUR"),
])
def test_bad_input_is_named_and_exits_2(argv, environ, message, capsys):
    assert main(argv, environ) == 2
    assert message in capsys.readouterr().err


def unreachable_cluster(tmp_path):
    """A kubeconfig for a cluster nobody serves: the commands must fail before calling it."""
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                    "users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                    "current-context: x\n")
    return path


def test_status_without_a_vast_api_says_how_to_give_one(tmp_path, capsys):
    kubeconfig = unreachable_cluster(tmp_path)
    assert main(["status", "--kubeconfig", str(kubeconfig), "--cluster-id", "abc"], {}) == 2
    assert "no Vast API: give --api-url URL" in capsys.readouterr().err


def test_status_refuses_the_real_vast_api_without_a_key(tmp_path, capsys):
    kubeconfig = unreachable_cluster(tmp_path)
    assert main(["status", "--kubeconfig", str(kubeconfig), "--cluster-id", "abc",
                 "--api-url", "https://console.vast.ai"], {}) == 2
    assert "the real Vast API needs a key" in capsys.readouterr().err
