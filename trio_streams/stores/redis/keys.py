"""Names of the Redis keys and channels one shared session uses.

Every name starts with :data:`PREFIX`. A session ``C`` has a metadata hash
(``meta:C``), a lease (``lease:C``) and one log stream per generation
(``log:<gen>:C``): a replacement starts a new generation, so the old log keeps its
terminal marker for the readers still on it while the new log starts empty. ``gen`` is
the generation id clients see (``core/generations.py``: hex digits, never ``:``), so
``log:<gen>:C`` is unambiguous even though ids may contain ``:``. A stopped session
leaves a tombstone ``tomb:C`` (why, which generation, whose) for the TTL.
Lookup needs no scan: each base id ``B`` has a sorted set ``variants:B`` of the
``B::…`` ids, ordered by creation. The bytes of a log are kept a second time as plain
strings of :data:`SEGMENT_BYTES` each (``bytes:<gen>:<n>:C`` holds the offsets from
``n * SEGMENT_BYTES`` on), which a replay reads with ``GETRANGE``. The Lua scripts
(``scripts.py``) build the same names from the same prefix.
"""

from __future__ import annotations

PREFIX = "trio-streams:"
#: The size of a log's byte segments, and so of a backlog read (see ``scripts.py``):
#: 1 MiB less room for Redis's string header, which at exactly 1 MiB would take
#: jemalloc's next size class (1.25 MiB).
SEGMENT_BYTES = (1 << 20) - 64


def meta_key(conversation_id: str) -> str:
    return f"{PREFIX}meta:{conversation_id}"


def log_key(conversation_id: str, generation: str) -> str:
    return f"{PREFIX}log:{generation}:{conversation_id}"


def segment_key(conversation_id: str, generation: str, index: int) -> str:
    """The plain string holding a log's bytes from ``index * SEGMENT_BYTES`` on."""
    return segment_name(segment_key_parts(conversation_id, generation), index)


def segment_name(parts: tuple[str, str], index: int) -> str:
    """A segment's key from its log's :func:`segment_key_parts` (what followers hold)."""
    head, tail = parts
    return f"{head}{index}{tail}"


def segment_key_parts(conversation_id: str, generation: str) -> tuple[str, str]:
    """What a log's segment names have before and after their index (the ``RANGE``
    script builds them from these)."""
    return f"{PREFIX}bytes:{generation}:", f":{conversation_id}"


def lease_key(conversation_id: str) -> str:
    return f"{PREFIX}lease:{conversation_id}"


def tomb_key(conversation_id: str) -> str:
    return f"{PREFIX}tomb:{conversation_id}"


def variants_key(base_id: str) -> str:
    return f"{PREFIX}variants:{base_id}"


def control_channel(instance_id: str) -> str:
    """The pub/sub channel an instance listens on for cancels of its producers."""
    return f"{PREFIX}control:{instance_id}"
