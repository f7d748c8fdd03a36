"""The plugin author's documentation (docs/plugins) matches the code it describes.

Every hook has a section in the hook reference with its exact signature and is exercised by
a test; the tutorial's code is the example package's code; the adapter and testing pages
cover the whole public API they document; links between the pages resolve.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pluggy
import pytest

from scheduler import adapter, hookspecs, plugins, testing

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "plugins"
EXAMPLE = DOCS / "example"
TESTS = REPO / "tests"

CODE_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


@cache
def specs() -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """Every hook specification in scheduler.hookspecs: name -> (function, options)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    found = {}
    for name in dir(hookspecs):
        opts = pm.parse_hookspec_opts(hookspecs, name)
        if opts is not None:
            found[name] = (getattr(hookspecs, name), dict(opts))
    return found


HOOKS = sorted(specs())


def signature(func: Callable[..., Any]) -> str:
    """``name(arg: Type, ...) -> Return``, with the annotations as written in the source."""

    def annotation(value: Any) -> str:
        return value if isinstance(value, str) else inspect.formatannotation(value)

    sig = inspect.signature(func)
    params = ", ".join(
        p.name if p.annotation is p.empty else f"{p.name}: {annotation(p.annotation)}"
        for p in sig.parameters.values()
    )
    returns = (
        "" if sig.return_annotation is sig.empty else f" -> {annotation(sig.return_annotation)}"
    )
    return f"{func.__name__}({params}){returns}"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


@cache
def hook_sections() -> dict[str, str]:
    """The body of each ``### name`` section of the hook reference, by name."""
    parts = re.split(r"^### +`?(\w+)`? *$", read("hooks.md"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block."""
    return CODE_BLOCK.findall(markdown)


def mentioned(name: str, markdown: str) -> bool:
    """True when ``name`` appears in inline code: `name`, `name(...)`, `name = ...`."""
    return re.search(rf"`{re.escape(name)}\b[^`]*`", markdown) is not None


# ============================================================================ hook reference


def test_every_hook_has_a_section_in_the_hook_reference() -> None:
    missing = sorted(set(HOOKS) - set(hook_sections()))
    assert not missing, f"docs/plugins/hooks.md has no '### name' section for {missing}"


def test_every_section_of_the_hook_reference_is_a_hook() -> None:
    unknown = sorted(set(hook_sections()) - set(HOOKS))
    assert not unknown, f"docs/plugins/hooks.md documents hooks that do not exist: {unknown}"


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_section_opens_with_the_exact_signature(hook: str) -> None:
    blocks = code_blocks(hook_sections().get(hook, ""))
    assert blocks, f"the {hook} section has no code block"
    language, code = blocks[0]
    assert (language, code.strip()) == ("python", signature(specs()[hook][0]))


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_section_says_whether_the_first_or_all_results_count(hook: str) -> None:
    match = re.search(r"^\*\*Results:\*\* (\w+)", hook_sections().get(hook, ""), re.M)
    assert match, f"the {hook} section has no '**Results:** ...' line"
    firstresult = specs()[hook][1]["firstresult"]
    assert (match.group(1) == "first") == firstresult, (
        f"{hook} is {'' if firstresult else 'not '}firstresult, "
        f"but its section says '**Results:** {match.group(1)}'"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_section_has_an_example_pluggy_would_accept(hook: str) -> None:
    spec_args = set(inspect.signature(specs()[hook][0]).parameters)
    examples = []
    for language, code in code_blocks(hook_sections().get(hook, "")):
        if language != "python" or "@hookimpl" not in code:
            continue
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == hook:
                examples.append({a.arg for a in node.args.args} - {"self"})
    assert examples, f"the {hook} section has no example implementation (@hookimpl def {hook})"
    for args in examples:
        assert args <= spec_args, f"the {hook} example takes {args - spec_args}, not in the spec"


# ============================================================================ hooks are tested


def hook_uses(source: str, hook: str) -> bool:
    """Whether test source implements ``hook`` with @hookimpl or calls it as the core does."""
    name = re.escape(hook)
    patterns = (
        # @hookimpl / @hookimpl(...) on a function or method, possibly in a plugin's source
        rf"@hookimpl\b(?:\([^)]*\))?\s*\n\s*(?:async\s+)?def\s+{name}\s*\(",
        rf"\.hook\.{name}\s*\(",
        rf"\b(?:call_all|hook_impls)\(\s*['\"]{name}['\"]",
    )
    return any(re.search(p, source) for p in patterns)


def test_every_hook_is_exercised_by_a_test() -> None:
    sources = [
        p.read_text(encoding="utf-8")
        for p in sorted(TESTS.glob("**/*.py"))
        if p.resolve() != Path(__file__).resolve()
    ]
    untested = [hook for hook in HOOKS if not any(hook_uses(s, hook) for s in sources)]
    assert not untested, (
        f"no test under tests/ implements or calls the hooks {untested}: add one that does"
    )


# ============================================================================ the tutorial


def tutorial_excerpts() -> list[tuple[str, str]]:
    """(path in the example, code) of each tutorial block that opens with ``# <path>``."""
    found = []
    for _language, code in code_blocks(read("tutorial.md")):
        first, _, rest = code.partition("\n")
        match = re.fullmatch(r"# (\S+)", first)
        if match and (EXAMPLE / match.group(1)).is_file():
            found.append((match.group(1), rest))
    return found


def test_the_tutorials_code_is_the_example_packages_code() -> None:
    excerpts = tutorial_excerpts()
    assert len(excerpts) >= 10, "the tutorial shows too little of docs/plugins/example"
    for path, code in excerpts:
        source = (EXAMPLE / path).read_text(encoding="utf-8")
        assert code in source, f"a tutorial block headed '# {path}' differs from that file"


def test_the_tutorial_shows_every_file_of_the_example_package() -> None:
    shown = {path for path, _code in tutorial_excerpts()}
    sources = [*EXAMPLE.glob("src/**/*.py"), *EXAMPLE.glob("tests/**/*.py")]
    files = {"pyproject.toml"} | {str(p.relative_to(EXAMPLE)) for p in sources}
    assert files - shown == set(), "the tutorial does not show these files of the example"


def test_the_example_package_declares_its_entry_point_in_the_smm_scheduler_group() -> None:
    pyproject = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")
    assert f"[project.entry-points.{plugins.ENTRY_POINT_GROUP}]" in pyproject


# ============================================================================ the other pages


def test_the_overview_names_the_entry_point_group_and_the_switches() -> None:
    index = read("index.md")
    for name in (plugins.ENTRY_POINT_GROUP, "SMM_LOAD_PLUGINS", "SMM_TRACE_PLUGINS"):
        assert mentioned(name, index), f"docs/plugins/index.md does not mention `{name}`"


def test_the_overview_lists_every_built_in_plugin() -> None:
    built_in = {
        ep.name
        for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == "smm-scheduler"
    }
    index = read("index.md")
    missing = sorted(name for name in built_in if not mentioned(name, index))
    assert not missing, f"docs/plugins/index.md does not list the built-in plugins {missing}"


def test_the_adapter_page_documents_the_whole_adapter_api() -> None:
    page = read("adapters.md")
    errors = [
        name
        for name in adapter.__all__
        if isinstance(getattr(adapter, name), type)
        and issubclass(getattr(adapter, name), adapter.PublishError)
        and name != "PublishError"
    ]
    methods = [
        name
        for name, _member in inspect.getmembers(adapter.Adapter, inspect.isfunction)
        if not name.startswith("_")
    ]
    fields = [f.name for f in dataclasses.fields(adapter.Capabilities)]
    names = [*errors, *methods, *fields, "platform", "capabilities", "rate_limit_status"]
    missing = [name for name in names if not mentioned(name, page)]
    assert not missing, f"docs/plugins/adapters.md does not mention {missing}"


def test_the_testing_page_documents_the_whole_testing_kit() -> None:
    page = read("testing.md")
    contract = testing.AdapterContract
    tests = [name for name in dir(contract) if name.startswith("test_")]
    settings = [
        "adapter_class",
        "secret_values",
        "supports_network",
        "call_timeout",
        "make_account",
        "make_handler",
        "make_post",
        "make_adapter",
    ]
    names = [*testing.__all__, *testing.SCENARIOS, *testing.TRANSPORT_FAULTS, *settings, *tests]
    missing = [name for name in names if not mentioned(name, page)]
    assert not missing, f"docs/plugins/testing.md does not mention {missing}"


# ============================================================================ links


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_links_between_the_plugin_pages_resolve(page: str) -> None:
    text = read(page)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (DOCS / path).resolve() if path else DOCS / page
        if not file.is_relative_to(DOCS.resolve()):
            continue  # pages outside docs/plugins are someone else's to check
        if not file.exists():
            broken.append(target)
        elif anchor and file.is_file():
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"docs/plugins/{page} links to {broken}"
