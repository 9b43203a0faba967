"""The documentation's examples run, so a stale one fails the suite.

- Every ```python block of docs/**/*.md runs, the blocks of a page in order in one namespace (a
  page reads as one script); blocks that only include a file (``--8<--``) are skipped here, the
  file has its own test (examples/ → tests/test_examples.py).
- Every ``--8<-- "path:section"`` include names an existing file and a section marked in it, so the
  tutorial cannot quote code that is gone (checked without MkDocs installed).
- ``>>>`` examples in the math layer's docstrings run under doctest.
- With the ``docs`` extra installed, ``mkdocs build --strict`` (the API reference from the
  docstrings, every page, every include) succeeds with no warning.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README = ROOT / "README.md"  # its Python blocks run too (not part of the site)
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$', re.MULTILINE)
MATH_MODULES = ["pgjax.estimators", "pgjax.losses", "pgjax.distributions", "pgjax.trust_region",
                "pgjax.diagnostics"]


def python_blocks(page: pathlib.Path) -> list[tuple[int, str]]:
    """(first line number, code) of each runnable ```python block of a page."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        code = match.group(1)
        if INCLUDE.search(code):
            continue
        blocks.append((text.count("\n", 0, match.start(1)) + 1, code))
    return blocks


def test_the_docs_have_runnable_examples():
    runnable = {p.relative_to(DOCS).as_posix(): len(python_blocks(p)) for p in PAGES}
    assert runnable.get("index.md", 0) >= 3 and runnable.get("coming-from-rlax.md", 0) >= 1, runnable
    for page in ("concepts.md", "python-api.md", "environments.md"):
        assert runnable.get(page, 0) >= 1, page
    assert python_blocks(README), "README.md: its example is gone"


def test_the_readme_stays_one_screen_of_concepts_and_links():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 150


@pytest.mark.parametrize("page", [p for p in PAGES + [README] if python_blocks(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_code_blocks_run(page):
    """Each page's examples run in order in one namespace; they check their own results with
    ``assert`` (compared with numbers worked by hand or with another computation), so a stale
    example fails here."""
    blocks = python_blocks(page)
    assert any("assert " in code for _, code in blocks), f"{page.name}: its examples check nothing"
    import types
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")  # a real module: dataclasses
    sys.modules[module.__name__] = module                               # look their class up there
    try:
        for line, code in blocks:
            filename = f"{page.relative_to(ROOT)}:{line}"
            exec(compile(code, filename, "exec"), module.__dict__)  # noqa: S102 - the docs' own examples
    finally:
        del sys.modules[module.__name__]


def includes():
    for page in PAGES:
        for target in INCLUDE.findall(page.read_text(encoding="utf-8")):
            yield page, target


@pytest.mark.parametrize("page,target", list(includes()),
                         ids=[f"{p.relative_to(DOCS).as_posix()}:{t}" for p, t in includes()])
def test_included_snippets_exist(page, target):
    path, _, section = target.partition(":")
    source = ROOT / path
    assert source.is_file(), f"{page.name} includes {path}, which does not exist"
    if section:
        text = source.read_text(encoding="utf-8")
        for edge in ("start", "end"):
            assert f"--8<-- [{edge}:{section}]" in text, f"{path} lost its section {section!r}"


@pytest.mark.parametrize("name", MATH_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    if not tests:
        pytest.skip(f"{name} has no >>> examples")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} docstring examples of {name} failed (output above)"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None
                    or importlib.util.find_spec("mkdocstrings_handlers") is None,
                    reason='the docs extra is not installed (pip install -e ".[docs]")')
def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                             "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "estimators" / "index.html").is_file()


def test_the_cli_reference_page_is_generated_from_the_parser_and_the_declarations():
    """docs/cli.md is what pgjax's parser and setting declarations say today: adding a flag or a
    setting without regenerating the page fails here, naming the command that regenerates it."""
    from pgjax import cli
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert page == cli.reference_markdown(), f"docs/cli.md is stale: run {cli.REFERENCE_COMMAND}"
    assert "`learning_rate`" in page and "## pgjax export" in page


def test_the_benchmark_tables_the_docs_include_are_their_json_rendered():
    """The tables docs/benchmarks.md and benchmarks/README.md include: results/learning.md and
    throughput.md must be what benchmarks/results_table.py renders from their JSON today, and
    study_methods.md what benchmarks/study_methods.py renders from its JSON (regenerate with
    those scripts)."""
    import importlib.util
    path = ROOT / "benchmarks" / "results_table.py"
    spec = importlib.util.spec_from_file_location("results_table", path)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    results = ROOT / "benchmarks" / "results"
    for name, render in tables.TABLES.items():
        import json
        expected = render(json.loads((results / f"{name}.json").read_text())) + "\n"
        assert (results / f"{name}.md").read_text() == expected, "run python -m benchmarks.results_table"
    study_methods = importlib.import_module("benchmarks.study_methods")
    assert (results / "study_methods.md").read_text() == study_methods.markdown(), (
        "run python -m benchmarks.study_methods --table-only")


def test_the_benchmarks_readme_is_generated_from_the_results():
    """benchmarks/README.md is what benchmarks/readme.py writes from results/ today (a table
    regenerated without the page, or the page edited by hand, fails here) and stays short."""
    import importlib.util
    path = ROOT / "benchmarks" / "readme.py"
    spec = importlib.util.spec_from_file_location("benchmarks_readme", path)
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    page = (ROOT / "benchmarks" / "README.md").read_text()
    assert page == readme.render(), "benchmarks/README.md is stale: run python -m benchmarks.readme"
    assert len(page.splitlines()) <= 250
    assert (ROOT / "benchmarks" / "results" / "learning.md").read_text().strip().splitlines()[2] in page


def test_the_config_file_example_loads(tmp_path):
    """The TOML example on the running page is a valid settings file (16 settings: a grid of 2
    clip values times 8 draws)."""
    from pgjax.run import programs, spec_file
    text = (DOCS / "running.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", text, re.DOTALL).group(1)
    (tmp_path / "example.toml").write_text(example)
    spec = programs.fresh(file=spec_file.load(str(tmp_path / "example.toml")))
    assert len(spec.settings) == 16 and spec.config.num_envs == 16 and spec.options.eval_episodes == 100
