"""The node agent's shared secret: loading it and checking ``Authorization: Bearer`` headers.

Every agent and the operator hold one token (a Secret in a cluster, ``<sandbox>/agent-token`` in
the sandbox). The server checks it on every route but ``/healthz``; the clients (the operator's
:class:`~ringrift_operator.agent.client.AgentClient`, an agent pulling from a peer) send it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path

TOKEN_ENV = "RINGRIFT_AGENT_TOKEN"
MIN_TOKEN_LENGTH = 16  # a hex token of 8 random bytes; the sandbox writes 32 bytes
_SCHEME = "bearer"


class TokenError(ValueError):
    """No usable token: missing, unreadable or too short."""


def load_token(*, token_file: Path | None, env: Mapping[str, str]) -> str:
    """The token from ``token_file`` if given, else from ``$RINGRIFT_AGENT_TOKEN``.

    Surrounding whitespace (a trailing newline from ``echo``) is dropped. Raises
    :class:`TokenError` when there is none or it is shorter than ``MIN_TOKEN_LENGTH``.
    """
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenError(f"cannot read the token file {token_file}: {e}") from None
        origin = str(token_file)
    else:
        token = env.get(TOKEN_ENV, "").strip()
        origin = f"${TOKEN_ENV}"
    if not token:
        raise TokenError(f"no agent token: {origin} is empty (use --token-file or ${TOKEN_ENV})")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"the agent token in {origin} is shorter than {MIN_TOKEN_LENGTH} chars")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise TokenError(f"the agent token in {origin} contains whitespace or control characters")
    return token


def bearer_headers(token: str) -> dict[str, str]:
    """The request header that proves a client holds ``token``."""
    return {"Authorization": f"Bearer {token}"}


def is_authorized(header: str | None, *, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != _SCHEME:
        return False
    # Bytes, so that a non-ASCII header cannot raise in compare_digest.
    return hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8")
    )
