"""Which credentials of a config cannot be read here, and how to provide them.

One answer for ``smm config check`` and ``smm doctor``: a reference to an environment variable
that is not set, or to a file that is missing, unreadable or empty, cannot be read; a systemd
credential (``LoadCredential=``) outside its service is only readable inside it, which only a
check inside the service can tell. Each secret is read to check it, never kept or shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from scheduler.config import Config, CredentialError, CredentialRef

#: How to check the credentials that only the service can read, from a shell.
INSIDE_THE_SERVICE = (
    "check inside the service, e.g. systemd-run --pipe "
    "-p LoadCredential=NAME:/path/to/secret smm doctor"
)


@dataclass(frozen=True)
class Unreadable:
    """A credential of an account that cannot be read here."""

    account: str
    key: str
    ref: CredentialRef
    #: Why it cannot be read (never the secret); None for a systemd credential outside its
    #: service, which may well be readable inside it.
    why: str | None

    @property
    def field(self) -> str:
        """Its key path in the config (``accounts.NAME.credentials.KEY``)."""
        return f"accounts.{self.account}.credentials.{self.key}"

    @property
    def only_inside_the_service(self) -> bool:
        """Whether only the service can tell (a warning, not a failure)."""
        return self.why is None

    def fix(self) -> str:
        """How to provide it."""
        if self.why is None:
            return INSIDE_THE_SERVICE
        if self.ref.kind == "env":
            return (
                f"set {self.ref.name} in the daemon's environment "
                "(systemd: Environment= or EnvironmentFile=)"
            )
        if self.ref.kind == "file":
            return f"create {self.ref.name}, readable by the daemon's user"
        return f"add LoadCredential={self.ref.name}:/path/to/secret to the systemd unit"


def unreadable_credentials(config: Config) -> list[Unreadable]:
    """Every credential of an enabled account that cannot be read here, by account then key.

    A disabled account publishes nothing, so its credentials are not needed."""
    found = []
    in_service = bool(os.environ.get("CREDENTIALS_DIRECTORY"))
    for name, account in sorted(config.accounts.items()):
        if not account.enabled:
            continue
        for key, ref in sorted(account.credentials.items()):
            if ref.kind == "credential" and not in_service:
                found.append(Unreadable(name, key, ref, None))
                continue
            try:
                ref.resolve()
            except CredentialError as exc:
                found.append(Unreadable(name, key, ref, str(exc)))
    return found


__all__ = ["INSIDE_THE_SERVICE", "Unreadable", "unreadable_credentials"]
