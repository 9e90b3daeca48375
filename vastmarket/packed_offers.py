"""Offers held packed: one bytes buffer for a whole snapshot, an :class:`Offer` made when one is read.

A reader process (the extender, the webhook) holds the current offer snapshot for as long as it
is current, and reads a handful of its offers per request (the best one, the one a pod names);
ranking reads the snapshot's numpy columns only. Held as :class:`Offer` objects, 10,000 offers
are some 200,000 small Python objects that live as long as the snapshot. Every request's own
short-lived objects (the thousands of node names kube-scheduler sends) are then allocated among
them, and decoding and encoding those lists gets measurably slower (``docs/benchmarks.md``).
Packed, the offers are two objects.

Each offer is its constructor's arguments, pickled (exact for every field type, and only ever
read back by the process that wrote it). Pure; no I/O.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from .offers import OFFER_FIELDS, Offer


class PackedOffers(Sequence[Offer]):
    """An immutable sequence of offers kept as one buffer; each read makes a new, equal
    :class:`Offer`."""

    __slots__ = ("_buffer", "_ends")

    def __init__(self, offers: Iterable[Offer]) -> None:
        parts = [pickle.dumps(tuple(getattr(o, f) for f in OFFER_FIELDS), protocol=pickle.HIGHEST_PROTOCOL)
                 for o in offers]
        self._buffer = b"".join(parts)
        self._ends: npt.NDArray[np.int64] = np.cumsum(np.array([len(p) for p in parts], dtype=np.int64))

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> Offer: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Offer, ...]: ...

    def __getitem__(self, index: int | slice) -> Offer | tuple[Offer, ...]:
        if isinstance(index, slice):
            return tuple(self._read(i) for i in range(*index.indices(len(self))))
        count = len(self._ends)
        position = int(index)
        if position < 0:
            position += count
        if not 0 <= position < count:
            raise IndexError(f"offer {index} of {count}")
        return self._read(position)

    def _read(self, position: int) -> Offer:
        start = int(self._ends[position - 1]) if position else 0
        values = pickle.loads(memoryview(self._buffer)[start:int(self._ends[position])])
        return Offer(*values)

    def __iter__(self) -> Iterator[Offer]:
        for position in range(len(self._ends)):
            yield self._read(position)

    @property
    def nbytes(self) -> int:
        """The bytes held (the buffer and the offsets)."""
        return len(self._buffer) + int(self._ends.nbytes)
