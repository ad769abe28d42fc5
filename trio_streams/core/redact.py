"""Conversation ids are secrets: whoever knows one can read and stop its stream.

Logs therefore show a short, stable fingerprint instead of the id, so operators can still
correlate lines about the same conversation.
"""

from __future__ import annotations

import hashlib


def redact(conversation_id: str | None) -> str:
    """A fingerprint like ``#3f9a1c0b`` that identifies an id in logs without revealing it."""
    if not conversation_id:
        return "-"
    return "#" + hashlib.sha256(conversation_id.encode()).hexdigest()[:8]
