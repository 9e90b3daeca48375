"""The mutating admission webhook: place opted-in GPU pods on a Vast offer at CREATE.

Contract
--------
- ``POST /mutate`` takes an ``admission.k8s.io/v1`` AdmissionReview and answers one with the
  same ``uid``. ``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (Prometheus) beside it.
  Served over HTTPS only; a renewed certificate is picked up without a restart
  (:mod:`webhooks.tls`).
- ``pods`` CREATE is judged, and the pod templates of Deployments, StatefulSets, ReplicaSets,
  Jobs and CronJobs at CREATE and at an UPDATE that changes the template; every other request is
  allowed untouched. Pods in ``kube-system`` and in the release's own namespace, and pods
  labelled ``vast.ai/enabled: "false"``, are allowed untouched even when sent. Which objects are
  sent at all (label ``vast.ai/enabled: "true"`` on the pod, the template or the namespace) is
  decided by the webhook configuration (``webhooks/mutating-webhook-configuration.yaml``).
- Only GPU pods go to Vast: a pod without ``nvidia.com/gpu`` is allowed untouched when its
  namespace opted in, denied when it opted in with its own label.
- A pod Vast cannot run (not exactly one container, init containers, no image, a volume that
  needs a cluster node), with an invalid ``vast.ai/*`` annotation or a GPU node selector that
  cannot be translated is denied; the message names the field, the value and the accepted form.
  A workload whose template would be denied is denied with the same message; templates are never
  patched.
- Otherwise the pod is admitted with a JSON Patch that adds the chosen offer's annotations
  (``vast.ai/offer-*``, ``vast.ai/selected-at``, ``vast.ai/selection``), the toleration for the
  virtual node's taint, ``spec.schedulerName`` and GPU node selectors the virtual node can satisfy
  (:func:`vastmarket.selectors.for_virtual_node`) — or, when no offer matches (or the snapshot is
  missing or stale), ``vast.ai/selection-error`` with the reason (or a denial, when configured).
- Idempotent: invoked again on its own output (``reinvocationPolicy: IfNeeded``) it returns no
  patch. ``dryRun`` requests get the same answer and leave no trace but a log line.
- Decided from the offer snapshot only: nothing here calls Vast or the Kubernetes API.
- A review that cannot be decoded is HTTP 400 with a JSON message; a 5xx means a bug.

Layers: :mod:`webhooks.admission` (AdmissionReview decode/encode; ``build_response`` is a pure
function of the body and a decision function), :mod:`webhooks.validation` (what Vast can run),
:mod:`webhooks.mutation` (mutate a copy, diff it into a JSON Patch), :mod:`webhooks.decisions`
(the policy, pure), :mod:`webhooks.settings`, :mod:`webhooks.tls` and the thin Flask shell
:mod:`webhooks.app`.
"""
