"""Drop the ``.jinja`` suffix of every generated file.

The template's files carry it so that the tools run on smm-scheduler's own repository (ruff,
mypy, pytest, editors) never read them as the Python or TOML they become once rendered.
"""

from pathlib import Path

for path in sorted(Path.cwd().rglob("*.jinja")):
    path.rename(path.with_name(path.name.removesuffix(".jinja")))
