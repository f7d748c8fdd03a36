"""Offline checks of an account's options and credentials, for a plugin's ``check_account``.

What a network cannot do without (its server, its chat, a token) and an option the plugin
does not read (a typo) would otherwise show up only at the first publish, as a paused
account; ``smm config check`` reports them with the config line instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.adapter import Account, Issue

#: Options the core reads for every network: ``Adapter.text_limit`` honours
#: ``max_characters`` (docs/plugins/adapters.md#text_limit).
CORE_OPTIONS = ("max_characters",)


def settings_issues(
    account: Account,
    *,
    known: Sequence[str],
    required: Sequence[tuple[str, str, str]] = (),
    credentials: Sequence[tuple[str, str]] = (),
    urls: Sequence[str] = (),
) -> list[Issue]:
    """Unknown options (with the likely one), then missing required options and credentials,
    then options that must be a web address (``urls``) and are not an http(s) URL with a host.

    ``known``: every option the plugin reads (the core's ``CORE_OPTIONS`` are added).
    ``required``: ``(option, what it is, example value)``. ``credentials``: ``(credential,
    what it is)``; only whether the config refers to it is checked (a reference whose secret
    is absent is reported as such elsewhere).
    """
    import difflib  # only when a config is checked

    known = [*known, *(k for k in CORE_OPTIONS if k not in known)]
    issues = []
    for key in account.options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known options: " + ", ".join(known)
            issues.append(Issue(f"options.{key}", f"unknown option {key!r}", hint))
    for key, what, example in required:
        value = account.option(key)
        if value is None or str(value).strip() == "":
            issues.append(
                Issue(f"options.{key}", f"missing: {what}", f"e.g. options.{key} = {example}")
            )
    for key, what in credentials:
        if key not in account.credentials:
            env = f"{account.platform}_{key}".upper()
            hint = f'e.g. credentials.{key} = {{ env = "{env}" }}'
            issues.append(Issue(f"credentials.{key}", f"missing: where {what} is", hint))
    for key in urls:
        value = account.option(key)
        if value is not None and (problem := url_problem(value)):
            issues.append(
                Issue(f"options.{key}", problem, f'e.g. options.{key} = "https://example.com"')
            )
    return issues


def url_problem(value: object) -> str:
    """Why ``value`` is not a web address a network's API can be reached at; "" if it is.
    Only http and https are requests httpx sends, and a URL without a host goes nowhere."""
    from urllib.parse import urlsplit

    from scheduler.errors import excerpt

    if not isinstance(value, str):
        return f"not a URL: {excerpt(value)}"
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
    except ValueError:
        return f"not a URL: {excerpt(value)}"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"{parts.scheme}:" if parts.scheme else "no scheme"
        return f"{excerpt(value)} is not an http(s) URL ({scheme})"
    if not host:
        return f"{excerpt(value)} has no host"
    return ""
