"""The domain's own exceptions. Every failure that leaves ``vastmarket`` is one of these."""

from __future__ import annotations


class KubeVastError(Exception):
    """Base of every error kube-vast raises on purpose."""


class ConfigError(KubeVastError):
    """A configuration file, environment variable or setting is wrong; the process must not start."""


class RequirementError(KubeVastError):
    """A requirement (annotation, flag, config value) has a wrong value.

    ``field`` names where it came from (``vast.ai/price-max``, ``VAST_GPU_TYPE``), ``value`` is
    what was given and ``accepted`` describes the accepted form.
    """

    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(f"{field}: invalid value {value!r}: expected {accepted}")


class InvalidPod(KubeVastError):
    """A pod (or a pod template) has a field kube-vast reads in the wrong shape
    (:mod:`vastmarket.pods`). ``problems`` are ``(JSON path, what is wrong)`` pairs; the message
    names the first three."""

    SHOWN = 3

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        more = len(self.problems) - self.SHOWN
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.problems[:self.SHOWN])
                         + (f" (and {more} more)" if more > 0 else ""))


class VastError(KubeVastError):
    """A call to the Vast API failed. ``uncertain`` is True when Vast may nevertheless have
    acted (a rent whose answer was lost): look the instance up before trying again."""

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        self.uncertain = uncertain
        super().__init__(message)


class VastUnavailable(VastError):
    """Vast could not be reached or answered 5xx after the bounded retries."""


class RateLimited(VastUnavailable):
    """Vast kept answering 429 after the bounded retries, or asked (``Retry-After``) for a longer
    wait than is sensible inline. ``retry_after``: seconds Vast asked to wait, when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class SearchQuotaExceeded(RateLimited):
    """Vast's daily search row quota is used up (429 ``search_quota_exceeded``). Never retried:
    no search may be sent before ``retry_after`` seconds (from ``Retry-After``, else
    ``X-RateLimit-Reset``; ``None`` when Vast said neither)."""


class VastRejected(VastError):
    """Vast refused the request (4xx with ``error``/``msg``)."""

    def __init__(self, message: str, *, status: int, error: str | None = None) -> None:
        self.status = status
        self.error = error
        super().__init__(message)


class OfferGone(VastRejected):
    """The offer was rented by someone else or withdrawn (404/410 ``no_such_ask``)."""


class AuthenticationFailed(VastRejected):
    """Vast does not accept the API key (the key itself is never included)."""


class InvalidResponse(VastError):
    """Vast answered something that is not the documented shape."""
