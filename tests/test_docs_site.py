"""The documentation site builds with ``mkdocs build --strict``, and every page is in its nav.

mkdocs.yml turns every broken link, broken anchor and page left out of the nav into a warning,
and ``--strict`` turns warnings into a failed build. The nav test names the pages concerned
directly: a new page must be added to the nav, or listed under ``not_in_nav`` or
``exclude_docs`` on purpose.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from venv_support import require_module, run

REPO = Path(__file__).resolve().parent.parent
MKDOCS_YML = REPO / "mkdocs.yml"


@pytest.fixture(scope="module")
def mkdocs_config() -> Any:
    require_module("mkdocs", "-e '.[docs]'")
    from mkdocs.config import load_config

    return load_config(str(MKDOCS_YML))


def _nav_pages(nav: Any) -> Iterator[str]:
    """The page paths named in a nav: its strings, and the values of its titled entries."""
    if isinstance(nav, str):
        if "://" not in nav:
            yield nav
    elif isinstance(nav, list):
        for entry in nav:
            yield from _nav_pages(entry)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


@pytest.mark.slow
def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    require_module("mkdocs", "-e '.[docs]'")

    result = run(
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        MKDOCS_YML,
        "--site-dir",
        tmp_path / "site",
        cwd=REPO,
    )

    warnings = [line for line in result.stderr.splitlines() if not line.startswith("INFO")]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(warnings)
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


def test_every_page_is_in_the_nav_or_deliberately_left_out(mkdocs_config: Any) -> None:
    from mkdocs.structure.files import InclusionLevel, get_files

    in_nav = set(_nav_pages(mkdocs_config["nav"]))
    pages = [f for f in get_files(mkdocs_config) if f.is_documentation_page()]

    missing = sorted(f.src_uri for f in pages if f.inclusion is InclusionLevel.INCLUDED)
    missing = [page for page in missing if page not in in_nav]
    assert not missing, (
        f"pages in docs/ but not in the nav of mkdocs.yml: {missing}; add them to the nav, "
        "or to not_in_nav (built, linked from other pages) or exclude_docs (not built)"
    )


def test_every_nav_entry_is_a_page(mkdocs_config: Any) -> None:
    docs = Path(mkdocs_config["docs_dir"])

    absent = [page for page in _nav_pages(mkdocs_config["nav"]) if not (docs / page).is_file()]

    assert not absent, f"the nav of mkdocs.yml names pages that do not exist in docs/: {absent}"


def test_the_plugin_templates_files_are_not_built_as_pages(mkdocs_config: Any) -> None:
    from mkdocs.structure.files import InclusionLevel, get_files

    # They are Jinja templates: rendered as pages they would show {{ cookiecutter.* }}.
    rendered = [
        f.src_uri
        for f in get_files(mkdocs_config)
        if f.src_uri.startswith("plugins/template/{{")
        and f.inclusion is not InclusionLevel.EXCLUDED
    ]

    assert not rendered, f"exclude them in mkdocs.yml (exclude_docs): {rendered}"


def test_code_and_tests_cite_the_design_page_of_the_project() -> None:
    """docs/design.md is the project's design; nothing cites a file outside it."""
    root = Path(__file__).resolve().parent.parent
    assert (root / "docs" / "design.md").is_file()
    citing = [
        str(p.relative_to(root))
        for folder in ("scheduler", "tests", "plugins", "docs")
        for p in (root / folder).rglob("*.py")
        if "DESIGN.md" in p.read_text(encoding="utf-8") and p.name != "test_docs_site.py"
    ]
    assert citing == []
