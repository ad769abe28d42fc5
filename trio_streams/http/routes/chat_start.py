"""How a route that speaks another protocol starts an ordinary chat completion session.

The AI SDK's ``/api/chat`` takes a conversation in its own shape but generates through the
same backend as ``/v1/chat/completions``: the demo model, or the upstream model servers.
Each of those route modules returns one of these from ``register``, so a new protocol adds
a view of the session, not a second way to run a model.
"""

from __future__ import annotations

from typing import Any, Protocol

from quart import Response

from trio_streams.stores.protocol import StreamHandle


class StartChatStream(Protocol):
    """Start (or replace) session ``conversation_id`` generating the chat ``body``.

    ``body`` is an OpenAI chat completion request with ``"stream": true``. The answer is the
    session, or the Response to give the client instead (an upstream that refused the request
    before it became a stream). Invalid bodies raise
    :class:`~trio_streams.http.errors.ApiError`, as on ``/v1/chat/completions``.
    """

    async def __call__(
        self, body: dict[str, Any], conversation_id: str
    ) -> StreamHandle | Response: ...
