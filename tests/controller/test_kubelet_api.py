"""What the virtual node's kubelet API answers: authentication and authorization first, the pod
looked up, the log read from Vast and rendered with the request's options, follow polls, and the
refusals — tested at the API's seams (pod directory, Vast log reader, authorizer, clock)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.kubelet_api import KubeletApi, PodTarget, pod_target
from controller.kubelet_auth import Attributes, AuthorizationUnavailable
from controller.kubelet_tls import Identity
from controller.reconciler import A_INSTANCE
from vastmarket.errors import KubeVastError, VastRejected, VastUnavailable

from .kubelet_fakes import APISERVER, INSTANCE, LOGS, NODE, Authorizer, Clock, Pods, VastLogs
from .objects import june_pod


@pytest.fixture
def pods() -> Pods:
    return Pods()


@pytest.fixture
def vast() -> VastLogs:
    return VastLogs()


@pytest.fixture
def authorizer() -> Authorizer:
    return Authorizer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(pods: Pods, vast: VastLogs, authorizer: Authorizer, clock: Clock) -> KubeletApi:
    return KubeletApi(pods=pods, logs=vast, authorizer=authorizer, default_node=NODE, clock=clock,
                      follow_interval=0.5, max_streams=2)


def get(api: KubeletApi, path: str = LOGS, identity: Identity | None = APISERVER, method: str = "GET",
        **query: str) -> Any:
    return api.answer(identity, method, path, {k: [v] for k, v in query.items()})


def test_the_log_of_the_pods_instance_is_answered_as_text(api: KubeletApi, vast: VastLogs) -> None:
    answer = get(api)
    assert (answer.status, answer.content_type) == (200, "text/plain; charset=utf-8")
    assert answer.body.decode().splitlines() == vast.lines
    assert vast.calls == [(INSTANCE, 10_000)]
    assert answer.follow is None


def test_tail_lines_asks_vast_for_just_those_lines(api: KubeletApi, vast: VastLogs) -> None:
    assert get(api, tailLines="1").body == b"listening on :8000\n"
    assert vast.calls == [(INSTANCE, 1)]


def test_since_seconds_shows_the_lines_first_read_within_the_window(api: KubeletApi, vast: VastLogs,
                                                                     clock: Clock) -> None:
    get(api)
    clock.now += 600
    vast.lines.append("GET /healthz 200")
    assert get(api, sinceSeconds="60").body == b"GET /healthz 200\n"
    assert get(api, sinceSeconds="3600").body.decode().splitlines() == vast.lines


def test_timestamps_and_limit_bytes_shape_the_body(api: KubeletApi) -> None:
    body = get(api, timestamps="true", limitBytes="40").body
    assert body == b"2025-06-15T15:06:40.000000Z [vastsim] in"  # 40 bytes


@pytest.mark.parametrize(("identity", "allow", "status", "words"), [
    (None, True, 401, "Unauthorized: the kubelet API of a Vast virtual node needs a client certificate"),
    (Identity("mallory", ("system:authenticated",)), False, 403,
     "Forbidden (user=mallory, verb=get, resource=nodes, subresource=proxy, name=vast-gpu-node-1)"),
])
def test_a_caller_without_a_certificate_or_the_right_is_refused(api: KubeletApi, vast: VastLogs, authorizer: Authorizer,
                                                                 identity: Identity | None, allow: bool, status: int,
                                                                 words: str) -> None:
    authorizer.allow = allow
    answer = get(api, identity=identity)
    assert answer.status == status and words in answer.body.decode()
    assert vast.calls == []


def test_the_caller_is_authorized_for_nodes_proxy_on_the_pods_node(api: KubeletApi, pods: Pods,
                                                                   authorizer: Authorizer) -> None:
    pods.targets[("speech", "june")] = PodTarget("vast-gpu-node-2", ("speech",), INSTANCE, False)
    get(api)
    get(api, "/exec/speech/june/speech", method="POST", command="ls")
    get(api, "/stats/summary")
    assert [a for _, a in authorizer.asked] == [
        Attributes("get", "vast-gpu-node-2"), Attributes("create", "vast-gpu-node-2"), Attributes("get", NODE)]


def test_a_failed_authorization_check_is_a_500_never_an_answer(api: KubeletApi, vast: VastLogs,
                                                              authorizer: Authorizer) -> None:
    authorizer.error = AuthorizationUnavailable("the SubjectAccessReview failed: connection refused")
    answer = get(api)
    assert answer.status == 500 and "authorization check failed" in answer.body.decode()
    assert vast.calls == []


@pytest.mark.parametrize(("path", "kind", "hint"), [
    ("/exec/speech/june/speech", "exec", "read its output with kubectl logs"),
    ("/attach/speech/june/speech", "attach", "kubectl logs -f"),
    ("/portForward/speech/june", "port-forward", "through the pod's Services"),
    ("/run/speech/june/speech", "run", "kubectl logs"),
])
def test_exec_attach_and_port_forward_are_refused_as_not_supported_on_vast(api: KubeletApi, path: str, kind: str,
                                                                         hint: str) -> None:
    answer = get(api, path, method="POST", command="ls")
    text = answer.body.decode()
    assert answer.status == 400
    assert text.startswith(f"{kind} is not supported on Vast instances") and hint in text


@pytest.mark.parametrize(("path", "target", "query", "status", "words"), [
    ("/containerLogs/speech/gone/speech", None, {}, 404, 'pod "gone" does not exist'),
    ("/containerLogs/speech/june/sidecar", None, {}, 404, 'container "sidecar" not found in pod "june"'),
    (LOGS, None, {"previous": "true"}, 400, 'previous terminated container "speech" in pod "june" not found'),
    (LOGS, PodTarget(NODE, ("speech",), None, False), {}, 400,
     'container "speech" in pod "june" is waiting to start: no Vast instance yet'),
    (LOGS, None, {"tailLines": "-3"}, 400, "tailLines='-3': must be 0 or more"),
    ("/pods", None, {}, 404, "a kubelet route kube-vast does not serve"),
])
def test_refusals_say_why_as_the_kubelet_would(api: KubeletApi, pods: Pods, vast: VastLogs, path: str,
                                               target: PodTarget | None, query: dict[str, str], status: int,
                                               words: str) -> None:
    if target is not None:
        pods.targets[("speech", "june")] = target
    answer = get(api, path, **query)
    assert answer.status == status and words in answer.body.decode(), answer.body
    assert vast.calls == []


@pytest.mark.parametrize(("error", "status", "words"), [
    (VastRejected("vast logs of instance 20000001: Instance 20000001 not found.", status=404,
                  error="no_such_instance"), 404, "(Vast instance 20000001) is not available"),
    (VastUnavailable("vast logs of instance 20000001: the log was not ready after 30 tries"), 503,
     "Vast did not deliver the log of instance 20000001"),
])
def test_vast_failing_to_give_the_log_is_answered_with_its_reason(api: KubeletApi, vast: VastLogs, error: Exception,
                                                                  status: int, words: str) -> None:
    vast.error = error
    answer = get(api)
    assert answer.status == status and words in answer.body.decode()


def test_the_api_server_not_answering_the_pod_lookup_is_a_503(api: KubeletApi, pods: Pods) -> None:
    pods.error = KubeVastError("get pod speech/june: connection refused")
    answer = get(api)
    assert answer.status == 503 and "connection refused" in answer.body.decode()


def test_follow_streams_the_lines_printed_since_each_poll(api: KubeletApi, vast: VastLogs, clock: Clock) -> None:
    answer = get(api, follow="true")
    assert answer.status == 200 and answer.body.decode().splitlines() == vast.lines
    follow = answer.follow
    assert follow is not None and follow.interval == 0.5
    clock.now += 0.5
    assert follow.poll() == (b"", False)
    vast.lines += ["GET /healthz 200", "GET /v1/tts 200"]
    clock.now += 0.5
    assert follow.poll() == (b"GET /healthz 200\nGET /v1/tts 200\n", False)
    assert vast.calls[-1] == (INSTANCE, 1000)
    follow.close()


def test_two_follows_and_a_read_of_one_log_never_take_lines_from_each_other(api: KubeletApi, vast: VastLogs,
                                                                              clock: Clock) -> None:
    first, second = get(api, follow="true").follow, get(api, follow="true").follow
    assert first is not None and second is not None
    vast.lines.append("GET /healthz 200")
    clock.now += 0.5
    assert first.poll() == (b"GET /healthz 200\n", False)
    clock.now += 0.5
    assert get(api).body.decode().splitlines()[-1] == "GET /healthz 200"
    clock.now += 0.5
    assert second.poll() == (b"GET /healthz 200\n", False)
    clock.now += 0.5
    assert (first.poll(), second.poll()) == ((b"", False), (b"", False))
    first.close()
    second.close()


def test_follows_of_one_pod_share_a_read_of_its_log_within_half_an_interval(api: KubeletApi, vast: VastLogs,
                                                                            clock: Clock) -> None:
    first, second = get(api, follow="true").follow, get(api, follow="true").follow
    assert first is not None and second is not None
    assert len(vast.calls) == 1  # the second answer used the first one's read
    vast.lines.append("ready")
    clock.now += 0.5
    assert (first.poll(), second.poll()) == ((b"ready\n", False), (b"ready\n", False))
    assert len(vast.calls) == 2
    first.close()
    second.close()


def test_a_follow_from_the_last_line_streams_only_what_comes_after_it(api: KubeletApi, vast: VastLogs,
                                                                      clock: Clock) -> None:
    answer = get(api, follow="true", tailLines="1")
    assert answer.body == b"listening on :8000\n" and vast.calls == [(INSTANCE, 1)]
    assert answer.follow is not None
    clock.now += 0.5
    assert answer.follow.poll() == (b"", False)  # reads 1000 lines: the older ones are not news
    vast.lines.append("ready")
    clock.now += 0.5
    assert answer.follow.poll() == (b"ready\n", False)
    answer.follow.close()


@pytest.mark.parametrize("change", ["deleted", "finished", "replaced"])
def test_follow_ends_with_the_pod_or_its_instance(api: KubeletApi, pods: Pods, vast: VastLogs, clock: Clock,
                                                  change: str) -> None:
    follow = get(api, follow="true").follow
    assert follow is not None
    vast.lines.append("done")
    clock.now += 0.5
    if change == "deleted":
        del pods.targets[("speech", "june")]
    else:
        pods.targets[("speech", "june")] = PodTarget(NODE, ("speech",), INSTANCE + (change == "replaced"),
                                                     change == "finished")
    assert follow.poll() == (b"done\n", True)  # the last lines, then the end
    follow.close()


def test_follow_ends_after_limit_bytes(api: KubeletApi, vast: VastLogs, clock: Clock) -> None:
    size = sum(len(line) + 1 for line in vast.lines)
    follow = get(api, follow="true", limitBytes=str(size + 5)).follow
    assert follow is not None
    vast.lines.append("0123456789")
    clock.now += 0.5
    assert follow.poll() == (b"01234", True)
    follow.close()


def test_follow_ends_after_reads_keep_failing(api: KubeletApi, vast: VastLogs, clock: Clock) -> None:
    follow = get(api, follow="true").follow
    assert follow is not None
    vast.error = VastUnavailable("vast logs: HTTP 503 after 4 attempts")
    polls = []
    for _ in range(5):
        clock.now += 0.5
        polls.append(follow.poll())
    assert polls == [(b"", False)] * 4 + [(b"", True)]
    follow.close()


def test_a_finished_pod_is_answered_whole_without_following(api: KubeletApi, pods: Pods) -> None:
    pods.targets[("speech", "june")] = PodTarget(NODE, ("speech",), INSTANCE, True)
    assert get(api, follow="true").follow is None


def test_follows_at_once_are_bounded_and_freed_when_closed(api: KubeletApi) -> None:
    first, second = get(api, follow="true"), get(api, follow="true")
    third = get(api, follow="true")
    assert third.status == 503 and "too many kubectl logs -f streams" in third.body.decode()
    assert api.active_streams == 2
    first.follow.close()
    first.follow.close()  # closing twice frees one place only
    assert api.active_streams == 1
    fourth = get(api, follow="true")
    assert fourth.follow is not None
    assert get(api, follow="true").status == 503
    second.follow.close()
    fourth.follow.close()


def test_a_pod_target_is_read_from_the_pod_bound_to_a_virtual_node() -> None:
    pod = june_pod()
    pod["metadata"]["annotations"][A_INSTANCE] = "20000042"
    pod["spec"]["nodeName"] = NODE
    pod["status"]["phase"] = "Running"
    assert pod_target(pod, (NODE,)) == PodTarget(NODE, ("june",), 20000042, False)
    pod["status"]["phase"] = "Succeeded"
    assert pod_target(pod, (NODE,)).finished is True  # type: ignore[union-attr]
    pod["spec"]["nodeName"] = "gpu-node-real"
    assert pod_target(pod, (NODE,)) is None
    assert pod_target(None, (NODE,)) is None
