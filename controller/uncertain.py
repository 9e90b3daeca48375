"""A rent whose outcome is unknown, and how long it stays unknown (pure).

Vast may make a rental and lose the answer (a 5xx, a dropped connection, an answer after the read
timeout); the controller may die while the rent is in flight, or after the answer and before it
wrote the instance id on the pod; and Vast's instance list may lag a new rental by some seconds.
Renting again in any of these cases would rent twice. So:

1. before the rent goes out, the pod's ``vast.ai/launch`` record gets ``renting``:
   ``{"offerId": N, "sentAt": "<RFC 3339>"}`` (:class:`PendingRent`), in the same write as the
   attempt count;
2. ``renting`` is removed only when the outcome is known: with the instance id (rented, or an
   instance carrying the pod's label was found and adopted) or when Vast refused for certain
   (offer gone, 4xx, never reached);
3. while ``renting`` is there and no instance carries the pod's label, the controller looks again
   (list by label, get by the annotated id) and does not rent, nor release a deleted pod's
   finalizer, until ``uncertain_rent_wait`` seconds after ``sentAt``; then it concludes that no
   instance was made (Event ``RentNotFound``) and rents again.

The marker lives on the pod, so a restarted controller (or a new leader) honours it too. The
price: after a rent whose answer was lost and which really was not made, the pod waits
``uncertain_rent_wait`` (120 s by default) before its next rent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RENTING = "renting"  # key of the marker in the vast.ai/launch record
_RESOLUTION = 1.0  # sentAt is written in whole seconds: count the wait from one second later


@dataclass(frozen=True, slots=True)
class PendingRent:
    offer_id: int | None
    sent_at: float | None  # epoch seconds; None when the record's sentAt is unreadable

    def encode(self) -> dict[str, Any]:
        at = None if self.sent_at is None else \
            dt.datetime.fromtimestamp(self.sent_at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"offerId": self.offer_id, "sentAt": at}

    @classmethod
    def read(cls, record: Mapping[str, Any]) -> PendingRent | None:
        """The marker in a launch record (``sent_at`` None when its time is unreadable: the
        caller restarts the wait from now, the safe side)."""
        raw = record.get(RENTING)
        if raw is None:
            return None
        raw = raw if isinstance(raw, Mapping) else {}
        offer = raw.get("offerId")
        return cls(offer if isinstance(offer, int) and not isinstance(offer, bool) else None,
                   _parse(raw.get("sentAt")))

    def deadline(self, wait: float) -> float:
        """When the rent may be concluded not made (never while ``sent_at`` is unreadable)."""
        return float("inf") if self.sent_at is None else self.sent_at + _RESOLUTION + wait

    def remaining(self, now: float, wait: float) -> float:
        return max(0.0, self.deadline(wait) - now)


def _parse(text: Any) -> float | None:
    if isinstance(text, str):
        try:
            return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            pass
    return None


def without_marker(record: Mapping[str, Any]) -> dict[str, Any]:
    """The launch record once the rent's outcome is known."""
    return {k: v for k, v in record.items() if k != RENTING}
