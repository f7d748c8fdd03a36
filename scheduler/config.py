"""The TOML config: accounts, weekly posting slots, policies. See docs/configuration.md.

Loading validates everything and reports every problem with its file, line and key path; a
secret is never read from the file itself, only a reference to where it lives.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import platformdirs

from scheduler.errors import InvalidInput, Problem, SmmError, excerpt
from scheduler.inline_secrets import check_inline_secrets
from scheduler.slots import check_learning, parse_windows
from scheduler.timeutil import LocalTimeError, parse_clock_time, parse_duration, zone

APP_NAME = "smm-scheduler"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SLOT_GROUPS = {
    "daily": tuple(range(7)),
    "weekdays": tuple(range(5)),
    "weekend": (5, 6),
    **{d: (i,) for i, d in enumerate(WEEKDAYS)},
}
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class CredentialError(SmmError):
    """A credential reference points at nothing. The message never contains the secret."""


def _remember(secret: str, source: str) -> str:
    """Tell the log redactor about a secret the moment it is read (``source``: where from,
    so that a file whose token is refreshed does not keep every old token registered)."""
    from scheduler.logging import register_secret

    register_secret(secret, source)
    return secret


@dataclass(frozen=True)
class CredentialRef:
    """Where a secret lives: an environment variable, a file, or a systemd credential."""

    kind: str  # "env" | "file" | "credential"
    name: str

    def describe(self) -> str:
        return {"env": "environment variable", "file": "file", "credential": "systemd credential"}[
            self.kind
        ] + f" {self.name}"

    @property
    def source(self) -> str:
        """The reference as the log redactor knows it (``register_secret``'s ``source``)."""
        return f"{self.kind}:{self.name}"

    def available(self) -> bool:
        """True when the secret can be read (without reading it into anything that is kept)."""
        try:
            self.resolve()
        except CredentialError:
            return False
        return True

    def resolve(self) -> str:
        """The secret itself. Callers must hand it only to the network plugin."""
        if self.kind == "env":
            value = os.environ.get(self.name)
            if not value:
                raise CredentialError(f"environment variable {self.name} is not set")
            return _remember(value, self.source)
        if self.kind == "file":
            path = Path(self.name).expanduser()
        else:
            creds_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds_dir:
                raise CredentialError(
                    f"systemd credential {self.name}: CREDENTIALS_DIRECTORY is not set "
                    "(run under systemd with LoadCredential=)"
                )
            if not _credential_name_ok(self.name):
                raise CredentialError(
                    f"systemd credential {self.name!r} leaves $CREDENTIALS_DIRECTORY"
                )
            path = Path(creds_dir) / self.name
        try:
            value = _read_secret_file(path).decode("utf-8").strip()
        except OSError as exc:
            raise CredentialError(f"cannot read {self.describe()}: {exc.strerror}") from None
        except ValueError as exc:  # not a regular file, too large
            raise CredentialError(f"{self.describe()}: {exc}") from None
        except UnicodeDecodeError:
            raise CredentialError(f"{self.describe()} is not UTF-8 text") from None
        if not value:
            raise CredentialError(f"{self.describe()} is empty")
        return _remember(value, self.source)


#: The largest secret file read: tokens and keys are far smaller; /dev/zero is endless.
MAX_SECRET_FILE = 64 * 1024


def _read_secret_file(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_SECRET_FILE bytes (ValueError otherwise)."""
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer (it changes nothing for a
    # regular file).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = file.read(MAX_SECRET_FILE + 1)
    if len(data) > MAX_SECRET_FILE:
        raise ValueError(f"larger than {MAX_SECRET_FILE // 1024} KiB: not a secret")
    return data


@dataclass(frozen=True)
class Policies:
    """How the daemon treats lateness and failures."""

    misfire_grace: timedelta = timedelta(minutes=15)
    max_attempts: int = 5
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class AccountConfig:
    """One account: which network, which zone, how to authenticate, when to post."""

    name: str
    platform: str
    timezone: str
    options: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, CredentialRef] = field(default_factory=dict)
    #: weekday (0 = Monday) -> sorted local times
    slots: Mapping[int, tuple[time, ...]] = field(default_factory=dict)
    policies: Policies = field(default_factory=Policies)
    enabled: bool = True
    #: New (and changed) posts wait for sign-off (``approval = "required"``).
    approval: bool = False
    #: Every media file of the account's posts must carry alt text (an import error if not).
    require_alt: bool = False
    #: Slot learning (``[accounts.NAME.slots] learn``): weekday -> the windows (first, last
    #: local time) the day's slots may move within; empty: the slots stay where they are.
    learn: Mapping[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class DaemonSettings:
    """Tuning of the long-running service."""

    tick: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(minutes=2)
    batch_size: int = 200
    shutdown_deadline: timedelta = timedelta(seconds=20)
    publish_timeout: timedelta = timedelta(seconds=60)
    #: Publishes in flight at once; 0 (``"auto"``, the default): as many as the accounts'
    #: networks take at once (``Worker.room``).
    concurrency: int = 0
    #: How often unconfirmed posts are looked up on their network.
    reconcile: timedelta = timedelta(minutes=5)
    #: How long start-up waits for an unreachable database; 0: for as long as it takes.
    database_wait: timedelta = timedelta(0)


@dataclass(frozen=True)
class ERSettings:
    """The engagement-rate loop's knobs (docs/er.md)."""

    half_life: timedelta = timedelta(days=14)
    floor: float = 0.10
    ceiling: float = 0.60
    max_change: float = 0.15
    min_posts: int = 2
    #: The most of the slots all the floors together keep for exploration.
    exploration: float = 0.5
    frozen: bool = False
    ages: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(hours=72))


@dataclass(frozen=True)
class MediaSettings:
    """Where local media may come from and which remote media may be fetched (docs/security.md)."""

    #: Directories local media may lie under, besides the plan file's own (absolute, resolved).
    roots: tuple[Path, ...] = ()
    #: Host names whose addresses may be internal (an intranet media server).
    allow_hosts: frozenset[str] = frozenset()
    #: Internal networks that may be fetched from.
    allow_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    fetch_timeout: timedelta = timedelta(seconds=30)
    fetch_max_bytes: int = 100 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True)
class WebSettings:
    """The web app (``smm web``, docs/web.md)."""

    listen: str = "127.0.0.1:8080"
    #: A queue that runs further ahead than this is flagged on the calendar.
    horizon: timedelta = timedelta(days=90)
    #: "local" (users and passwords in the database) or "proxy" (a trusted header names them).
    auth: str = "local"
    proxy_header: str = "X-Remote-User"
    #: Addresses whose ``proxy_header`` and ``X-Forwarded-Proto`` are believed.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    session_lifetime: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class PlanSettings:
    """Limits on plan files (docs/content-plan.md)."""

    #: A plan file larger than this is refused before it is parsed.
    max_file_bytes: int = 50_000_000


@dataclass(frozen=True)
class Config:
    """The whole config, validated."""

    path: Path | None
    accounts: Mapping[str, AccountConfig]
    policies: Policies = field(default_factory=Policies)
    database_url: str | None = None
    log_level: str = "info"
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    er: ERSettings = field(default_factory=ERSettings)
    plan: PlanSettings = field(default_factory=PlanSettings)
    metrics_listen: str | None = None
    plugins: Mapping[str, Any] = field(default_factory=dict)
    media: MediaSettings = field(default_factory=MediaSettings)
    web: WebSettings = field(default_factory=WebSettings)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "<defaults>"


def default_config_path() -> Path | None:
    """The first config that exists: ``$XDG_CONFIG_HOME/smm-scheduler/config.toml``, then /etc."""
    for candidate in (
        Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml",
        Path("/etc") / APP_NAME / "config.toml",
    ):
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------- parsing


class _Reader:
    """Walks the parsed TOML, collecting problems with key paths and best-effort line numbers."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        self.problems: list[Problem] = []

    def line_of(self, path: str) -> int | None:
        """Find the line that defines ``path`` (``a.b.c``): its table header, then the key."""
        parts = re.split(r"\.(?![^\[]*\])", re.sub(r"\[\d+\]$", "", path))
        best: int | None = None
        # Walk down: find the deepest table header that is a prefix, then the key under it.
        for depth in range(len(parts), 0, -1):
            header = ".".join(parts[:depth])
            pat = re.compile(r"^\s*\[\[?\s*" + re.escape(header) + r"\s*\]\]?\s*(#.*)?$")
            for i, line in enumerate(self.lines):
                if pat.match(line):
                    best = i + 1
                    rest = parts[depth:]
                    if not rest:
                        return best
                    key = re.compile(r"^\s*" + re.escape(rest[0]) + r"\s*[=.]")
                    for j in range(i + 1, len(self.lines)):
                        if self.lines[j].lstrip().startswith("["):
                            break
                        if key.match(self.lines[j]):
                            return j + 1
                    return best
        key = re.compile(r"^\s*" + re.escape(parts[0]) + r"\s*[=.]")
        for i, line in enumerate(self.lines):
            if key.match(line):
                return i + 1
        return best

    def problem(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, self.line_of(path), path, message, hint))

    def unknown_keys(self, path: str, table: Mapping[str, Any], known: set[str]) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else "known keys: " + ", ".join(sorted(known))
                )
                self.problem(f"{path}.{key}" if path else key, f"unknown key {excerpt(key)}", hint)

    def table(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.problem(path, f"{key} must be a table", f"write it as [{path}]")
            return {}
        return value

    def duration(
        self, table: Mapping[str, Any], key: str, path: str, default: timedelta
    ) -> timedelta:
        if key not in table:
            return default
        try:
            return parse_duration(table[key])
        except ValueError as exc:
            self.problem(
                f"{path}.{key}" if path else key, str(exc), "examples: 90s, 15m, 1h30m, 2d"
            )
            return default

    def number(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: Any,
        *,
        kind: type = int,
        low: float | None = None,
        high: float | None = None,
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        where = f"{path}.{key}" if path else key
        ok_types = (int, float) if kind is float else (int,)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            self.problem(where, f"must be a number, got {_show(value)}")
            return default
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(where, f"must be a finite number, got {value}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(where, f"{value} is out of range [{low}, {high}]")
            return default
        return kind(value)

    def boolean(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{path}.{key}", f"must be true or false, got {_show(value)}")
            return default
        return value


_POLICY_KEYS = {"misfire_grace", "max_attempts", "backoff_base", "backoff_max"}


def _policies(r: _Reader, table: Mapping[str, Any], path: str, base: Policies) -> Policies:
    r.unknown_keys(path, table, _POLICY_KEYS)
    return Policies(
        misfire_grace=r.duration(table, "misfire_grace", path, base.misfire_grace),
        max_attempts=r.number(table, "max_attempts", path, base.max_attempts, low=1, high=100),
        backoff_base=r.duration(table, "backoff_base", path, base.backoff_base),
        backoff_max=r.duration(table, "backoff_max", path, base.backoff_max),
    )


def _credential(r: _Reader, value: Any, path: str) -> CredentialRef | None:
    hint = (
        'reference the secret instead: { env = "VAR" }, { file = "/path" } or '
        '{ credential = "name" } (systemd LoadCredential)'
    )
    if isinstance(value, str):
        # The value itself may be a secret: never echo it.
        r.problem(path, "a secret must not be written in the config", hint)
        return None
    if not isinstance(value, dict) or len(value) != 1:
        r.problem(path, "a credential must name exactly one source", hint)
        return None
    ((kind, name),) = value.items()
    if kind not in ("env", "file", "credential") or not isinstance(name, str) or not name:
        r.problem(path, f"unknown credential source {_show(kind)}", hint)
        return None
    if "\0" in name or len(name) > 4096:
        r.problem(path, f"{kind} name is not usable: {_show(name)}")
        return None
    if kind == "credential" and not _credential_name_ok(name):
        r.problem(
            path,
            f"systemd credential {_show(name)} leaves $CREDENTIALS_DIRECTORY",
            "name the credential as LoadCredential= does: a plain file name, no / or ..",
        )
        return None
    return CredentialRef(kind, name)


def _credential_name_ok(name: str) -> bool:
    """A systemd credential is a file directly in $CREDENTIALS_DIRECTORY: a plain name."""
    return "/" not in name and "\\" not in name and name not in (".", "..")


def _slots(r: _Reader, table: Mapping[str, Any], path: str) -> dict[int, tuple[time, ...]]:
    out: dict[int, set[time]] = {}
    for key, value in table.items():
        where = f"{path}.{key}"
        if key not in _SLOT_GROUPS:
            close = difflib.get_close_matches(key, list(_SLOT_GROUPS), n=1)
            r.problem(
                where,
                f"unknown day {excerpt(key)}",
                f"did you mean {close[0]!r}?"
                if close
                else "use mon..sun, weekdays, weekend or daily",
            )
            continue
        if not isinstance(value, list):
            r.problem(where, "slots must be a list of times", 'write e.g. ["09:00", "17:30"]')
            continue
        for i, item in enumerate(value):
            if isinstance(item, time):
                t = item
            else:
                try:
                    t = parse_clock_time(str(item))
                except ValueError as exc:
                    r.problem(f"{where}[{i}]", str(exc), 'write times as "HH:MM", e.g. "09:30"')
                    continue
            for day in _SLOT_GROUPS[key]:
                out.setdefault(day, set()).add(t)
    return {day: tuple(sorted(times)) for day, times in sorted(out.items())}


_ACCOUNT_KEYS = {
    "platform",
    "timezone",
    "options",
    "credentials",
    "slots",
    "policies",
    "enabled",
    "approval",
    "require_alt",
}


def _account(r: _Reader, name: str, table: Any, base: Policies) -> AccountConfig | None:
    path = f"accounts.{name}"
    if not isinstance(table, dict):
        r.problem(path, "an account must be a table", f"write it as [{path}]")
        return None
    if not _ACCOUNT_NAME.match(name):
        r.problem(path, f"bad account name {excerpt(name)}", "use letters, digits, _ . and -")
    r.unknown_keys(path, table, _ACCOUNT_KEYS)
    ok = True
    platform = table.get("platform")
    if not isinstance(platform, str) or not platform:
        r.problem(f"{path}.platform", "missing platform", 'e.g. platform = "mastodon"')
        ok = False
    tzname = table.get("timezone")
    if not isinstance(tzname, str):
        r.problem(f"{path}.timezone", "missing time zone", 'e.g. timezone = "Europe/Riga"')
        ok = False
    else:
        try:
            zone(tzname)
        except LocalTimeError as exc:
            r.problem(f"{path}.timezone", str(exc), exc.hint)
            ok = False
    options = r.table(table, "options", f"{path}.options")
    creds: dict[str, CredentialRef] = {}
    for key, value in r.table(table, "credentials", f"{path}.credentials").items():
        ref = _credential(r, value, f"{path}.credentials.{key}")
        if ref:
            creds[key] = ref
    # Signing keys (hmac_secret...) never leave the machine; the others travel with requests.
    sent = any(not re.search(r"(?i)hmac|sign", key) for key in creds)
    check_inline_secrets(r.problem, options, f"{path}.options", f"{path}.credentials", sent)
    slots_table = r.table(table, "slots", f"{path}.slots")
    slots = _slots(r, {k: v for k, v in slots_table.items() if k != "learn"}, f"{path}.slots")
    learn = _learn(r, slots_table, slots, f"{path}.slots.learn")
    policies = _policies(
        r, r.table(table, "policies", f"{path}.policies"), f"{path}.policies", base
    )
    enabled = r.boolean(table, "enabled", path, True)
    require_alt = r.boolean(table, "require_alt", path, False)
    approval = table.get("approval", "none")
    if approval not in ("none", "required"):
        r.problem(
            f"{path}.approval", f"unknown approval {excerpt(approval)}", '"required" or "none"'
        )
    if not ok:
        return None
    assert isinstance(platform, str)
    assert isinstance(tzname, str)
    return AccountConfig(
        name=name,
        platform=platform,
        timezone=tzname,
        options=dict(options),
        credentials=creds,
        slots=slots,
        policies=policies,
        enabled=enabled,
        approval=approval == "required",
        require_alt=require_alt,
        learn=learn,
    )


def _learn(
    r: _Reader, slots_table: Mapping[str, Any], slots: Mapping[int, tuple[time, ...]], path: str
) -> dict[int, tuple[tuple[time, time], ...]]:
    """The slot learning windows (``learn`` in the slots table), checked against the slots."""
    if "learn" not in slots_table:
        return {}
    windows, problems = parse_windows(slots_table["learn"])
    for suffix, message in problems:
        r.problem(path + suffix, message, 'e.g. learn = { weekdays = "08:00-22:00" }')
    if problems:
        return {}
    if not windows:
        r.problem(path, "names no window", 'e.g. learn = { weekdays = "08:00-22:00" }')
        return {}
    for message in check_learning(slots, windows):
        r.problem(path, message, "the slots start where the config puts them: inside the windows")
    return windows


def _show(value: Any, limit: int = 60) -> str:
    """``value`` for a message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _database_url(r: _Reader, value: Any) -> str | None:
    """``[database] url``, checked as ``make_engine`` will (form, driver, port)."""
    from scheduler.db.engine import check_database_url

    if not isinstance(value, str):
        r.problem("database.url", f"must be a string, got {_show(value)}")
        return None
    try:
        parsed = check_database_url(value)
    except SmmError as exc:
        r.problem("database.url", str(exc))
        return None
    if parsed.password:
        r.problem(
            "database.url",
            "a database password written in the config",
            "set SMM_DATABASE_URL in the service's environment instead, or use peer "
            "authentication over the socket: postgresql+psycopg://smm@/smm?host=/var/run/postgresql",
        )
        return None
    return value


def _listen(r: _Reader, value: Any) -> str | None:
    """``[metrics] listen`` as ``HOST:PORT``; ``:PORT`` means 127.0.0.1."""
    from scheduler.observability import parse_listen

    hint = 'e.g. listen = "127.0.0.1:9464"; every interface: "0.0.0.0:9464" or "[::]:9464"'
    if not isinstance(value, str):
        r.problem("metrics.listen", f"must be a string, got {_show(value)}", hint)
        return None
    try:
        parse_listen(value)
    except ValueError as exc:
        r.problem("metrics.listen", str(exc), hint)
        return None
    return value


_MEDIA_KEYS = {
    "roots",
    "allow_hosts",
    "allow_networks",
    "fetch_timeout",
    "fetch_max_bytes",
    "max_redirects",
}


def _media(r: _Reader, table: Mapping[str, Any], base: Path) -> MediaSettings:
    r.unknown_keys("media", table, _MEDIA_KEYS)
    d = MediaSettings()

    def strings(key: str) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            r.problem(f"media.{key}", "must be a list of strings")
            return []
        return value

    roots = []
    for entry in strings("roots"):
        root = (base / Path(entry).expanduser()).resolve()
        if root == Path("/") or root.parts[1:2] in (("proc",), ("sys",), ("dev",)):
            r.problem(
                "media.roots", f"{excerpt(entry)} cannot be a media root", "name a media folder"
            )
        else:
            roots.append(root)
    networks = []
    for entry in strings("allow_networks"):
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError:
            r.problem("media.allow_networks", f"{entry[:100]!r} is not a network", "10.1.2.0/24")
    return MediaSettings(
        roots=tuple(roots),
        allow_hosts=frozenset(h.lower().rstrip(".") for h in strings("allow_hosts")),
        allow_networks=tuple(networks),
        fetch_timeout=r.duration(table, "fetch_timeout", "media", d.fetch_timeout),
        fetch_max_bytes=r.number(table, "fetch_max_bytes", "media", d.fetch_max_bytes, low=1),
        max_redirects=r.number(table, "max_redirects", "media", d.max_redirects, low=0, high=20),
    )


_TOP_KEYS = {
    "database",
    "logging",
    "policies",
    "daemon",
    "er",
    "plan",
    "metrics",
    "plugins",
    "accounts",
    "media",
    "web",
}


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _web(r: _Reader, w: Mapping[str, Any]) -> WebSettings:
    keys = {"listen", "horizon", "auth", "proxy_header", "trusted_proxies", "session_lifetime"}
    r.unknown_keys("web", w, keys)
    d = WebSettings()
    listen = w.get("listen", d.listen)
    if not isinstance(listen, str) or ":" not in listen:
        r.problem("web.listen", f"bad address {excerpt(listen)}", 'e.g. listen = "127.0.0.1:8080"')
        listen = d.listen
    auth = w.get("auth", d.auth)
    if auth not in ("local", "proxy"):
        r.problem("web.auth", f"unknown auth {excerpt(auth)}", '"local" or "proxy"')
        auth = d.auth
    header = w.get("proxy_header", d.proxy_header)
    if not isinstance(header, str) or not re.fullmatch(r"[A-Za-z0-9-]+", header):
        r.problem("web.proxy_header", f"bad header name {excerpt(header)}", 'e.g. "X-Remote-User"')
        header = d.proxy_header
    proxies = w.get("trusted_proxies", list(d.trusted_proxies))
    if not isinstance(proxies, list) or not all(isinstance(p, str) for p in proxies):
        r.problem("web.trusted_proxies", "must be a list of addresses", '["127.0.0.1"]')
        proxies = list(d.trusted_proxies)
    try:
        # Compared as text with a request's peer address, which is an address in short form.
        proxies = [str(ip_address(p.strip())) for p in proxies]
    except ValueError:
        bad = next(p for p in proxies if not _is_ip(p.strip()))
        r.problem(
            "web.trusted_proxies",
            f"{excerpt(bad)} is not an IP address",
            'list the proxies\' own addresses, e.g. ["127.0.0.1", "::1"] (no host names '
            "or networks)",
        )
        proxies = list(d.trusted_proxies)
    return WebSettings(
        listen=listen,
        horizon=r.duration(w, "horizon", "web", d.horizon),
        auth=auth,
        proxy_header=header,
        trusted_proxies=tuple(proxies),
        session_lifetime=r.duration(w, "session_lifetime", "web", d.session_lifetime),
    )


class ConfigProblems(InvalidInput):
    """A config with problems; ``partial`` holds the accounts read without any."""

    def __init__(self, problems: list[Problem], what: str, partial: Config) -> None:
        super().__init__(problems, what)
        self.all_problems = problems
        self.partial = partial


def parse_config(text: str, file: str, *, path: Path | None = None) -> Config:
    """Validate ``text`` (the TOML source of ``file``); raise InvalidInput listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InvalidInput(
            [Problem(file, int(m.group(1)) if m else None, None, f"not valid TOML: {exc}")],
            "config",
        ) from None
    r = _Reader(file, text)
    r.unknown_keys("", data, _TOP_KEYS)

    db = r.table(data, "database", "database")
    r.unknown_keys("database", db, {"url"})
    database_url = db.get("url")
    if database_url is not None:
        database_url = _database_url(r, database_url)

    logging_t = r.table(data, "logging", "logging")
    r.unknown_keys("logging", logging_t, {"level"})
    level_value = logging_t.get("level", "info")
    level = level_value.lower() if isinstance(level_value, str) else ""
    if level not in ("debug", "info", "warning", "error"):
        r.problem(
            "logging.level", f"unknown level {_show(level_value)}", "debug, info, warning or error"
        )
        level = "info"

    policies = _policies(r, r.table(data, "policies", "policies"), "policies", Policies())

    d = r.table(data, "daemon", "daemon")
    r.unknown_keys(
        "daemon",
        d,
        {
            "tick",
            "lease",
            "batch_size",
            "shutdown_deadline",
            "publish_timeout",
            "concurrency",
            "reconcile",
            "database_wait",
        },
    )
    dd = DaemonSettings()
    daemon = DaemonSettings(
        tick=r.duration(d, "tick", "daemon", dd.tick),
        lease=r.duration(d, "lease", "daemon", dd.lease),
        batch_size=r.number(d, "batch_size", "daemon", dd.batch_size, low=1, high=10000),
        shutdown_deadline=r.duration(d, "shutdown_deadline", "daemon", dd.shutdown_deadline),
        publish_timeout=r.duration(d, "publish_timeout", "daemon", dd.publish_timeout),
        concurrency=0
        if d.get("concurrency") == "auto"
        else r.number(d, "concurrency", "daemon", dd.concurrency, low=0, high=1000),
        reconcile=r.duration(d, "reconcile", "daemon", dd.reconcile),
        database_wait=r.duration(d, "database_wait", "daemon", dd.database_wait),
    )

    e = r.table(data, "er", "er")
    r.unknown_keys(
        "er",
        e,
        {
            "half_life",
            "floor",
            "ceiling",
            "max_change",
            "min_posts",
            "frozen",
            "ages",
            "exploration",
        },
    )
    de = ERSettings()
    ages = de.ages
    if "ages" in e:
        if isinstance(e["ages"], list) and e["ages"]:
            try:
                ages = tuple(parse_duration(a) for a in e["ages"][:100])
            except ValueError as exc:
                r.problem("er.ages", str(exc), 'e.g. ages = ["24h", "72h"]')
        else:
            r.problem("er.ages", "must be a non-empty list of durations", 'e.g. ["24h", "72h"]')
    er = ERSettings(
        half_life=r.duration(e, "half_life", "er", de.half_life),
        floor=r.number(e, "floor", "er", de.floor, kind=float, low=0, high=1),
        ceiling=r.number(e, "ceiling", "er", de.ceiling, kind=float, low=0, high=1),
        max_change=r.number(e, "max_change", "er", de.max_change, kind=float, low=0, high=1),
        min_posts=r.number(e, "min_posts", "er", de.min_posts, low=0, high=10000),
        frozen=r.boolean(e, "frozen", "er", de.frozen),
        ages=ages,
        exploration=r.number(e, "exploration", "er", de.exploration, kind=float, low=0, high=1),
    )
    if er.floor > er.ceiling:
        r.problem("er.floor", "floor is above ceiling", "keep floor <= ceiling")

    p = r.table(data, "plan", "plan")
    r.unknown_keys("plan", p, {"max_file_bytes"})
    dp = PlanSettings()
    plan = PlanSettings(
        max_file_bytes=r.number(p, "max_file_bytes", "plan", dp.max_file_bytes, low=1, high=2**40)
    )

    metrics = r.table(data, "metrics", "metrics")
    r.unknown_keys("metrics", metrics, {"listen"})
    listen = metrics.get("listen")
    if listen is not None:
        listen = _listen(r, listen)

    base = path.parent if path is not None else Path.cwd()
    media = _media(r, r.table(data, "media", "media"), base)

    web = _web(r, r.table(data, "web", "web"))

    accounts: dict[str, AccountConfig] = {}
    for name, table in r.table(data, "accounts", "accounts").items():
        acc = _account(r, name, table, policies)
        if acc:
            accounts[name] = acc

    if r.problems:
        # The accounts read without a problem of their own go along, so that `smm config
        # check` also asks their plugins about them: every problem in one pass.
        fine = {
            n: a
            for n, a in accounts.items()
            if not any((p.field or "").startswith(f"accounts.{n}.") for p in r.problems)
        }
        raise ConfigProblems(r.problems, f"config {file}", Config(path=path, accounts=fine))
    return Config(
        path=path,
        accounts=accounts,
        policies=policies,
        database_url=database_url,
        log_level=level,
        daemon=daemon,
        er=er,
        plan=plan,
        metrics_listen=listen,
        plugins=dict(r.table(data, "plugins", "plugins")),
        media=media,
        web=web,
    )


def line_of(config: Config, key_path: str) -> int | None:
    """The line of ``config``'s file that defines ``key_path`` (``accounts.a.platform``), for
    problems found after loading (a plugin's checks); None when it cannot be told."""
    if config.path is None:
        return None
    try:
        text = config.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _Reader(config.source, text).line_of(key_path)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the config file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput([Problem(str(p), None, None, "file not found")], "config") from None
    except UnicodeDecodeError as exc:
        # A config saved as UTF-16 or Latin-1 by an editor: say where and what to do.
        line = exc.object[: exc.start].count(b"\n") + 1
        problem = Problem(
            str(p), line, None, "not UTF-8 text", "save the file as UTF-8 (TOML is UTF-8 only)"
        )
        raise InvalidInput([problem], "config") from None
    except OSError as exc:
        raise InvalidInput([Problem(str(p), None, None, f"cannot read: {exc}")], "config") from None
    return parse_config(text, str(p), path=p)


def empty_config() -> Config:
    """A config with no accounts (for commands that only need the database)."""
    return Config(path=None, accounts={})
