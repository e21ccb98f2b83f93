"""Masking of secrets in what lightkeeper shows, logs or stores.

Values under secret-looking keys are replaced whole; in free text, URL user-info (passwords, and
web URLs whose user-info is a token), secret-looking query parameters (token, key, password,
secret, signature, sig, credential...), ``password=`` in DSNs, bearer tokens, ``sk-`` keys and
PEM private keys are masked. Used by the logs, the stored events and configuration snapshots,
and ``config show``.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

# Keys whose values are always secret.
SECRET_KEYS = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|key[_-]?material|"
    r"authorization|credential|dsn)$",
    re.IGNORECASE,
)
# Query parameters whose values are credentials (?api_key=..., &X-Amz-Signature=..., &sig=...).
SECRET_PARAMS = (r"[\w.-]*(?:token|key|pass(?:word|wd)?|pwd|secret|signature|credential|auth"
                 r"|session)[\w.-]*|sig|code")
# Secrets embedded in free text.
_TEXT_PATTERNS = [
    # URLs / DSNs with a password: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)([^@\s/]+)(@)", re.IGNORECASE),
     r"\1***\3"),
    # web URLs with user-info alone (https://TOKEN@host): the user-info is the credential
    (re.compile(r"(\b(?:https?|wss?)://)([^:/\s@?#]+)(@)", re.IGNORECASE), r"\1***\3"),
    # secret-looking query parameters of a URL
    (re.compile(r"([?&;](?:" + SECRET_PARAMS + r")=)([^&#\s\"']*)", re.IGNORECASE), r"\1***"),
    # libpq key=value DSNs: password=...
    (re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),
    # Bearer tokens and common API key shapes
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "***"),
    # PEM private keys
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     "***"),
    # key=value / key: value for secret-looking keys in free text
    (re.compile(r"\b((?:api[_-]?key|token|secret|passwd|password)[\"']?\s*[:=]\s*[\"']?)"
                r"([^\s\"',;&]+)", re.IGNORECASE), r"\1***"),
]


def redact_text(text: str) -> str:
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(value: Any, key: str = "") -> Any:
    """Return ``value`` with secrets replaced, recursively for dicts and lists."""
    if key and SECRET_KEYS.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
