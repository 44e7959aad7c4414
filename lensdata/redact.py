"""Credentials kept out of messages: a Ray address may carry a user and token, and Ray's errors repeat it.

Every message that shows a cluster address (``--address``, ``RAY_ADDRESS``) or Ray's own error about
it goes through :func:`redact`: ``tuner``'s preflight for searches, and ``data simulate --address``
here. It lives in the lowest layer so that both can use it.
"""

from __future__ import annotations

import re

# user:password@ (or token@) after a scheme, and the value of a token-like query parameter or key=value.
USERINFO = re.compile(r"(://|^|\s)[^/@\s]+@")
SECRET_VALUE = re.compile(r"(?i)\b((?:auth|token|password|passwd|secret|api_?key|access_?key)[\w-]*=)[^&\s;,)]+")


def redact(text: str) -> str:
    """``text`` with the credentials an address may carry replaced by ``***``.

    ``ray://user:token@host:10001`` reads ``ray://***@host:10001``; ``?token=abc`` reads ``?token=***``.
    """
    return SECRET_VALUE.sub(r"\1***", USERINFO.sub(r"\1***@", text))


def first_line(err: BaseException) -> str:
    """An error's first line, redacted (its type's name when it has no text)."""
    return redact(str(err).splitlines()[0] if str(err).strip() else type(err).__name__)
