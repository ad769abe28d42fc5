"""Optional API-key authentication, and the rule that a session belongs to its key.

Keys are never stored, compared or logged in the clear: each is kept as its SHA-256
digest, a presented key is hashed and compared with every known digest through
:func:`hmac.compare_digest`, without stopping at the first match, so neither the time
taken nor an early exit says which key (or how much of one) matched. The digest's first
hex digits are the key's *owner* fingerprint, recorded on each session it creates: another
key cannot read, look up or stop that session, and is answered exactly as if the id did
not exist (``404``; ``204`` for DELETE, which is always ``204``), so ids are not confirmed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from trio_streams.core.errors import AUTHENTICATION
from trio_streams.core.session import StreamSession
from trio_streams.http import cors
from trio_streams.http.errors import error_response

API_KEY_HEADER = "X-Api-Key"
#: Routes anyone may reach: health checks, and the static chat page (whose API calls
#: carry the key it was opened with: ``/#key=<key>``).
PUBLIC_PATHS = frozenset({"/", "/health"})
PUBLIC_PREFIXES = ("/static/",)
OWNER_PREFIX = "key:"


class ApiKeys:
    """The configured keys, as digests; empty means authentication is off."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        cleaned = {key.strip() for key in keys if key.strip()}
        self._digests = [hashlib.sha256(key.encode()).digest() for key in sorted(cleaned)]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def owner_of(self, presented: str | None) -> str | None:
        """The owner fingerprint of ``presented`` if it is a configured key, else ``None``."""
        if presented is None:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        matched: bytes | None = None
        for known in self._digests:  # every digest, always: no early exit
            if hmac.compare_digest(digest, known):
                matched = known
        return None if matched is None else OWNER_PREFIX + matched.hex()[:16]


def presented_key(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or, failing that, ``X-Api-Key``."""
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get(API_KEY_HEADER) or None


def is_public(method: str, path: str) -> bool:
    """Only reads are public: ``POST /`` may be passed through to an upstream."""
    return method in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


def unauthorized() -> Response:
    response = error_response(401, "Missing or invalid API key", AUTHENTICATION)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def install(
    app: QuartTrio, keys: ApiKeys, public: Callable[[str, str], bool] | None = None
) -> None:
    """Check the key of every request but the public ones, before routing answers.

    ``public(method, path)`` names more public requests: a page directory's files.
    """

    @app.before_request
    async def authenticate() -> Response | None:
        g.trio_streams_owner = None
        # A CORS preflight never carries the key: the browser asks before sending it.
        method, path = request.method, request.path
        if not keys.enabled or is_public(method, path) or cors.is_preflight(request):
            return None
        if public is not None and public(method, path):
            return None
        owner = keys.owner_of(presented_key(request.headers))
        if owner is None:
            return unauthorized()
        g.trio_streams_owner = owner
        return None


def current_owner() -> str | None:
    """The fingerprint of the key of the current request (``None`` without auth)."""
    owner: str | None = g.get("trio_streams_owner")
    return owner


def may_access(session: StreamSession | None) -> bool:
    """Whether the current request may see ``session``: it exists and is its key's."""
    return session is not None and session.owner == current_owner()
