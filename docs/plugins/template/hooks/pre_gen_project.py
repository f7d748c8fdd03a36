"""Refuse a platform name that cannot be an entry point, a package and a platform at once."""

import re
import sys

NETWORK = "{{ cookiecutter.network }}"

if not re.fullmatch(r"[a-z][a-z0-9_]*", NETWORK):
    sys.exit(
        f"error: network {NETWORK!r} must start with a lower-case letter and contain only "
        "lower-case letters, digits and _ (it names the platform, the entry point and the "
        "package smm_<network>)"
    )
