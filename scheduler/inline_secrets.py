"""Secrets written into the config where a reference belongs, found before anything runs.

An account's ``options`` go to its network plugin as written; a token there (a header, a URL
with a password or a ``?token=``) would sit in a file that is backed up, diffed and pasted into
tickets, and would never reach the redactor. ``smm config check`` refuses each one with its
key path, and never repeats the value. See docs/security.md#secrets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["check_inline_secrets", "is_loopback", "secret_like_name"]

#: ``report(key_path, message, hint)``.
Report = Callable[[str, str, str], None]

_SECRET_WORD = re.compile(
    r"(?i)token|secret|passw(?:or)?d|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|authori[sz]ation|cookie|signature|credential|session[-_]?id"
)
#: Short words that mean a credential only as a whole part of a name (``X-Auth``, not
#: ``author``); ``key`` and ``sig`` only in query strings (``?key=``, ``?sig=``).
_SECRET_PART = re.compile(r"(?i)(?:^|[-_.])(?:auth|pwd|pass)(?:$|[-_.])")
_QUERY_PART = re.compile(r"(?i)(?:^|[-_.])(?:key|sig)(?:$|[-_.])")


def secret_like_name(name: str, *, query: bool = False) -> bool:
    """True for names that credentials go by: ``Authorization``, ``X-Api-Key``, ``api_token``."""
    return bool(
        _SECRET_WORD.search(name)
        or _SECRET_PART.search(name)
        or (query and _QUERY_PART.search(name))
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_inline_secrets(
    report: Report, options: Mapping[str, Any], path: str, credentials_path: str, has_creds: bool
) -> None:
    """Report every secret written inline in ``options`` (tables and lists walked through).

    ``has_creds``: the account has credentials, so a plain ``http://`` URL among its options
    (other than this machine) would carry them in clear text.
    """
    hint = f"move it to [{credentials_path}] as a reference"
    cleartext_reported = False

    def walk(value: Any, where: str, name: str | None) -> None:
        nonlocal cleartext_reported
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, f"{where}.{key}", str(key))
            return
        if isinstance(value, list):
            for i, inner in enumerate(value[:1000]):
                walk(inner, f"{where}[{i}]", name)
            return
        if not isinstance(value, str) or not value:
            return
        if name is not None and secret_like_name(name):
            report(where, "this looks like a secret written inline", hint)
            return
        if "://" not in value:
            return
        try:
            url = urlsplit(value.strip())
            host = url.hostname or ""
            password = url.password
        except ValueError:
            return  # not a URL after all; the plugin's own checks speak of it
        if password:
            report(where, "a URL with a password written inline", hint)
        for param, param_value in parse_qsl(url.query, keep_blank_values=True):
            if param_value and secret_like_name(param, query=True):
                report(
                    where,
                    f"a URL with a secret in its query string (parameter {param[:40]!r})",
                    hint,
                )
                break
        if has_creds and url.scheme.lower() == "http" and not is_loopback(host):
            if not cleartext_reported:
                report(
                    where,
                    "the account's credentials would be sent in clear text to an http:// URL",
                    "use https://, or http:// only to this machine (localhost, 127.0.0.1, ::1)",
                )
            cleartext_reported = True

    for key, value in options.items():
        walk(value, f"{path}.{key}", str(key))
