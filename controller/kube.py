"""The Kubernetes gateway: the only module that imports the ``kubernetes`` client.

Objects go in and come out as plain dicts in the API server's JSON form (camelCase), read with
``_preload_content=False`` so that nothing is lost or renamed by the client's models. API errors
become :class:`KubeError` subclasses (:class:`NotFound`, :class:`Conflict`, :class:`Forbidden`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from vastmarket.budgets import GROUP as BUDGET_GROUP, PLURAL as BUDGET_PLURAL, VERSION as BUDGET_VERSION
from vastmarket.errors import KubeVastError

log = logging.getLogger(__name__)
COMPONENT = "kube-vast-controller"
REPORTING_CONTROLLER = "vast.ai/kube-vast-controller"
EVENT_AGGREGATION_SECONDS = 600.0  # client-go's correlator counts repeats within 10 minutes
EVENT_CACHE_SIZE = 4096


class KubeError(KubeVastError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Forbidden(KubeError):
    pass


def _translate(exc: ApiException, what: str) -> KubeError:
    reason = exc.reason or ""
    try:
        body = json.loads(exc.body or "{}")
        reason = body.get("message") or reason
    except (ValueError, TypeError):
        pass
    message = f"{what}: {reason}"[:500]
    if exc.status == 404:
        return NotFound(message, status=404)
    if exc.status == 409:
        return Conflict(message, status=409)
    if exc.status in (401, 403):
        return Forbidden(message, status=exc.status)
    return KubeError(message, status=exc.status)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(ts: float) -> str:
    """A Time string (whole seconds, UTC), as Event ``firstTimestamp``/``lastTimestamp`` take."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(ts: float | None = None) -> str:
    """A MicroTime string. Never on a whole second: the client library round-trips bodies
    through its models, whose isoformat() drops ``.000000`` and the API server then refuses it."""
    moment = dt.datetime.now(dt.timezone.utc) if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    if moment.microsecond == 0:
        moment += dt.timedelta(microseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_micro() -> str:
    return micro_time()


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster configuration, or a kubeconfig file when given (or found)."""
    try:
        if kubeconfig:
            return cast(client.ApiClient, config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        return cast(client.ApiClient, config.new_client_from_config())  # type: ignore[no-untyped-call]


class KubeGateway:
    """Thin, dict-in dict-out access to the API objects the controller uses."""

    def __init__(self, api: client.ApiClient, *, component: str = COMPONENT, host: str = "") -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.component = component
        self.host = host
        self._events: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}  # see event()
        self._events_lock = threading.Lock()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise _translate(exc, what) from None
        except HTTPError as exc:
            raise KubeError(f"{what}: {type(exc).__name__}: {exc}") from None
        data = result.data
        return json.loads(data) if data else None

    # --- pods -----------------------------------------------------------------------------------

    def list_pods(self, *, field_selector: str = "", label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        data = self._call("list pods", self.core.list_pod_for_all_namespaces,
                          field_selector=field_selector, label_selector=label_selector)
        return data["items"], data["metadata"].get("resourceVersion", "")

    def watch_pods(self, *, field_selector: str, resource_version: str,
                   timeout_seconds: int = 60) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields ``(type, pod)``; ends after ``timeout_seconds``; raises :class:`KubeError` (410
        Gone when the resource version is too old: relist)."""
        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            stream = w.stream(self.core.list_pod_for_all_namespaces,  # type: ignore[no-untyped-call]
                              field_selector=field_selector, resource_version=resource_version,
                              timeout_seconds=timeout_seconds, allow_watch_bookmarks=True,
                              _preload_content=False)
            for event in stream:
                obj = event.get("raw_object") or {}
                if event.get("type") == "ERROR":
                    raise KubeError(f"watch pods: {obj.get('message', obj)}", status=obj.get("code"))
                yield event["type"], obj
        except ApiException as exc:
            raise _translate(exc, "watch pods") from None
        except HTTPError as exc:
            raise KubeError(f"watch pods: {type(exc).__name__}") from None
        finally:
            w.stop()  # type: ignore[no-untyped-call]

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call(f"get pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace)  # type: ignore[no-any-return]
        except NotFound:
            return None

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch of a pod; include ``metadata.resourceVersion`` to make it conditional."""
        return self._call(f"patch pod {namespace}/{name}", self.core.patch_namespaced_pod, name, namespace,  # type: ignore[no-any-return]
                          dict(patch))

    def patch_pod_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"update status of pod {namespace}/{name}", self.core.patch_namespaced_pod_status,  # type: ignore[no-any-return]
                          name, namespace, {"status": dict(status)})

    def delete_pod(self, namespace: str, name: str, *, uid: str, grace_seconds: int = 0) -> None:
        body = client.V1DeleteOptions(grace_period_seconds=grace_seconds,
                                      preconditions=client.V1Preconditions(uid=uid))
        try:
            self._call(f"delete pod {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace,
                       body=body)
        except NotFound:
            pass

    # --- configuration the pods refer to ------------------------------------------------------

    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            cm = self._call(f"get configmap {namespace}/{name}", self.core.read_namespaced_config_map, name, namespace)
        except NotFound:
            return None
        return dict(cm.get("data") or {})

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        import base64

        try:
            secret = self._call(f"get secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.get("data") or {}).items()}
        out.update(secret.get("stringData") or {})
        return out

    # --- services and endpoint slices ---------------------------------------------------------

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return self._call(f"list services in {namespace}", self.core.list_namespaced_service, namespace)["items"]  # type: ignore[no-any-return]

    def list_endpoint_slices(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return self._call(f"list endpointslices in {namespace}", self.discovery.list_namespaced_endpoint_slice,  # type: ignore[no-any-return]
                          namespace, label_selector=label_selector)["items"]

    def apply_endpoint_slice(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the slice, or replace it when it exists (keeping its resourceVersion)."""
        name = body["metadata"]["name"]
        try:
            return self._call(f"create endpointslice {namespace}/{name}", self.discovery.create_namespaced_endpoint_slice,  # type: ignore[no-any-return]
                              namespace, dict(body))
        except Conflict:
            current = self._call(f"get endpointslice {namespace}/{name}", self.discovery.read_namespaced_endpoint_slice,
                                 name, namespace)
            replacement = json.loads(json.dumps(body))
            replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._call(f"replace endpointslice {namespace}/{name}",  # type: ignore[no-any-return]
                              self.discovery.replace_namespaced_endpoint_slice, name, namespace, replacement)

    def delete_endpoint_slice(self, namespace: str, name: str) -> None:
        try:
            self._call(f"delete endpointslice {namespace}/{name}", self.discovery.delete_namespaced_endpoint_slice,
                       name, namespace)
        except NotFound:
            pass

    # --- events -------------------------------------------------------------------------------

    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, kind: str = "Pod",
              type_: str = "Normal", now: float | None = None) -> None:
        """Record an Event on ``obj``; failures are logged, never raised (events are best effort).

        A core/v1 Event as the kubelet's recorder writes it: ``firstTimestamp``,
        ``lastTimestamp`` and ``count`` (what ``kubectl get events`` shows and sorts by), ``source``
        and the reporting controller; with ``eventTime`` too, so that it reads as a complete
        ``events.k8s.io/v1`` Event. The same Event again (object, reason, message, type) within
        :data:`EVENT_AGGREGATION_SECONDS` is counted on the first one (``count`` + 1, a new
        ``lastTimestamp``) like client-go's correlator, instead of piling up copies."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        moment = time.time() if now is None else now
        stamp = rfc3339(moment)
        key = (str(meta.get("uid") or f"{namespace}/{meta.get('name')}"), reason, message, type_)
        with self._events_lock:
            seen = self._events.get(key)
        try:
            if seen is not None and moment - seen[2] <= EVENT_AGGREGATION_SECONDS:
                name, count, _ = seen
                try:
                    self._call(f"update event {namespace}/{name}", self.core.patch_namespaced_event, name, namespace,
                               {"count": count + 1, "lastTimestamp": stamp})
                    self._remember_event(key, name, count + 1, moment)
                    return
                except NotFound:
                    pass  # expired (the API server keeps Events for an hour): record it anew
            name = f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:16]}"
            body: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"apiVersion": obj.get("apiVersion", "v1"), "kind": kind, "name": meta.get("name"),
                                   "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": reason, "message": message[:1024], "type": type_, "action": reason,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                # Also the events.k8s.io/v1 time, which readers of that API (and its models) need.
                "eventTime": micro_time(moment),
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "reportingComponent": REPORTING_CONTROLLER, "reportingInstance": self.host or self.component,
            }
            self._call(f"create event {reason} on {namespace}/{meta.get('name')}",
                       self.core.create_namespaced_event, namespace, body)
            self._remember_event(key, name, 1, moment)
        except KubeError as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc)

    def _remember_event(self, key: tuple[str, str, str, str], name: str, count: int, at: float) -> None:
        with self._events_lock:
            self._events.pop(key, None)
            self._events[key] = (name, count, at)
            while len(self._events) > EVENT_CACHE_SIZE:
                del self._events[next(iter(self._events))]

    # --- nodes and leases ---------------------------------------------------------------------

    def get_node(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call(f"get node {name}", self.core.read_node, name)  # type: ignore[no-any-return]
        except NotFound:
            return None

    def list_nodes(self, *, label_selector: str = "") -> list[dict[str, Any]]:
        data = self._call("list nodes", self.core.list_node, label_selector=label_selector)
        return data["items"]  # type: ignore[no-any-return]

    def create_node(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"create node {body['metadata']['name']}", self.core.create_node, dict(body))  # type: ignore[no-any-return]

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"patch node {name}", self.core.patch_node, name, dict(patch))  # type: ignore[no-any-return]

    def patch_node_status(self, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"update status of node {name}", self.core.patch_node_status, name,  # type: ignore[no-any-return]
                          {"status": dict(status)})

    # --- team budgets (VastBudget, controller/budgets.py) --------------------------------------

    def list_vast_budgets(self) -> list[dict[str, Any]] | None:
        """Every VastBudget in every namespace; None when the CRD is not installed."""
        try:
            data = self._call("list vastbudgets", client.CustomObjectsApi(self.api).list_cluster_custom_object,
                              BUDGET_GROUP, BUDGET_VERSION, BUDGET_PLURAL)
        except NotFound:
            return None
        return list(data.get("items") or [])

    def patch_vast_budget_status(self, namespace: str, name: str, status: Mapping[str, Any], *,
                                 resource_version: str) -> dict[str, Any]:
        """Merge-patch a VastBudget's status, conditional on ``resource_version`` (:class:`Conflict`
        when another writer got there first)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        return self._call(f"update status of vastbudget {namespace}/{name}",  # type: ignore[no-any-return]
                          client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status,
                          BUDGET_GROUP, BUDGET_VERSION, namespace, BUDGET_PLURAL, name, body)

    # --- authorization ------------------------------------------------------------------------

    def review_access(self, *, user: str, groups: tuple[str, ...], verb: str, resource: str,
                      subresource: str, name: str) -> bool:
        """Whether ``user`` in ``groups`` may ``verb`` the ``resource/subresource`` named ``name``
        (a SubjectAccessReview, as a kubelet asks for its own API)."""
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": list(groups),
                         "resourceAttributes": {"verb": verb, "resource": resource, "subresource": subresource,
                                                "name": name}}}
        review = self._call(f"review access of {user} to {resource}/{subresource} {name}",
                            client.AuthorizationV1Api(self.api).create_subject_access_review, body)
        return bool(((review or {}).get("status") or {}).get("allowed"))

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call(f"get lease {namespace}/{name}", self.coordination.read_namespaced_lease, name, namespace)  # type: ignore[no-any-return]
        except NotFound:
            return None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(f"create lease {namespace}/{body['metadata']['name']}",  # type: ignore[no-any-return]
                          self.coordination.create_namespaced_lease, namespace, dict(body))

    def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace with the body's resourceVersion: a concurrent writer gets :class:`Conflict`."""
        name = body["metadata"]["name"]
        return self._call(f"replace lease {namespace}/{name}", self.coordination.replace_namespaced_lease,  # type: ignore[no-any-return]
                          name, namespace, dict(body))
