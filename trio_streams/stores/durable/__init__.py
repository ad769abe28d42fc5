"""Durable Streams stores: the seam (:mod:`.protocol`) and its implementations."""

from __future__ import annotations

from trio_streams.stores.durable.protocol import DurableStore, DurableStreamsUnsupportedError


def durable_store_of(store: object) -> DurableStore:
    """The Durable Streams store that lives beside a session store.

    Raises :class:`DurableStreamsUnsupportedError` for a store that has none yet, so the
    HTTP layer can say so instead of failing later.
    """
    found: DurableStore | None = getattr(store, "durable_streams", None)
    if found is None:
        raise DurableStreamsUnsupportedError(
            f"the {type(store).__name__} session store has no Durable Streams implementation yet"
        )
    return found
