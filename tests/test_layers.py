"""The layer contract of ARCHITECTURE.md, checked on the source: pgjax's import graph (every
``import`` of a pgjax module, at module level or inside a function) has no cycle at module level;
the math layer and the environments import nothing above them; nothing below the host side imports
it; the report and the study rules import no JAX-side module; and reading a run or study folder
imports no JAX at all (:func:`assert_reads_without_jax`, called on real folders by test_runner.py
and test_programs.py). A new upward import or cycle fails here, naming it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ((ROOT / "pgjax", "pgjax"), (ROOT / "envs", "pgjax.envs"))

MATH = {"pgjax.errors", "pgjax._checks", "pgjax.estimators", "pgjax.losses", "pgjax.distributions"}
HOST_SIDE = ("pgjax.run", "pgjax.report", "pgjax.cli", "pgjax.api", "pgjax.policy")
# the JSON, NumPy and matplotlib side: what the report and the study rules may import of pgjax
NO_JAX = {"pgjax.config_error", "pgjax.run.saved", "pgjax.run.folder", "pgjax.run.spec_file",
          "pgjax.run.loggers", "pgjax.run.records", "pgjax.run.thinning", "pgjax.run"}


def modules() -> dict[str, Path]:
    found = {}
    for base, package in PACKAGES:
        for path in base.rglob("*.py"):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _targets(name: str, node, is_package: bool, known) -> list[str]:
    """The pgjax modules an import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    submodules = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in known]
    named_only_submodules = submodules and len(submodules) == len(node.names)
    return submodules + ([prefix] if prefix in known and not named_only_submodules else [])


def _type_checking_only(node) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_graph() -> tuple[dict[str, set], dict[str, set]]:
    """(module-level imports, imports inside functions) of every pgjax module; imports made for
    annotations alone (``if TYPE_CHECKING:``) load nothing and are left out."""
    known = modules()
    top, inner = {m: set() for m in known}, {m: set() for m in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        tree.body = [statement for statement in tree.body if not _type_checking_only(statement)]
        module_level = set()
        for statement in tree.body:
            for node in ast.walk(statement):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    break
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    module_level.add(id(node))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(name, node, path.name == "__init__.py", known):
                    if target != name:
                        (top if id(node) in module_level else inner)[name].add(target)
    return top, inner


def _cycle(graph: dict[str, set]) -> list[str] | None:
    """One cycle of ``graph`` (a package importing its own submodules excepted), or None."""
    def edges(v):
        return [w for w in graph[v] if not w.startswith(v + ".")]

    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in edges(v):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = "done"
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def _violations(graph, sources, allowed) -> list[str]:
    return sorted(f"{m} imports {t}" for m in graph if sources(m) for t in graph[m] if not allowed(t))


def test_no_import_cycle_at_module_level():
    top, _ = import_graph()
    assert _cycle(top) is None, " -> ".join(_cycle(top))


def test_the_math_layer_and_the_environments_import_nothing_above_them():
    top, inner = import_graph()
    both = {m: top[m] | inner[m] for m in top}
    assert not _violations(both, lambda m: m in MATH, lambda t: t in MATH)
    assert not _violations(both, lambda m: m.startswith("pgjax.envs"),
                           lambda t: t.startswith("pgjax.envs"))


def test_the_xla_cpu_room_imports_nothing_else_of_pgjax():
    """pgjax/_xla_cpu sits under every layer that calls it: it imports only itself (and jax,
    flax, numpy), so a workaround never reaches into the core."""
    top, inner = import_graph()
    both = {m: top[m] | inner[m] for m in top}
    room = lambda m: m.startswith("pgjax._xla_cpu")  # noqa: E731
    assert [m for m in both if room(m)], "pgjax/_xla_cpu not found"
    assert not _violations(both, room, room)


def test_nothing_below_the_host_side_imports_it():
    top, inner = import_graph()
    both = {m: top[m] | inner[m] for m in top}
    below = lambda m: not m.startswith(HOST_SIDE) and m not in ("pgjax",)
    assert not _violations(both, below, lambda t: not t.startswith(HOST_SIDE))


def test_the_report_and_the_study_rules_import_no_jax_side_module():
    top, _ = import_graph()
    reader = lambda m: m.startswith(("pgjax.report", "pgjax.study"))
    allowed = lambda t: t.startswith(("pgjax.report", "pgjax.study")) or t in NO_JAX
    assert not _violations(top, reader, allowed)
    assert not _violations({m: top[m] for m in NO_JAX if m in top}, lambda m: True,
                           lambda t: t in NO_JAX)


def test_the_checks_see_an_upward_import(tmp_path, monkeypatch):
    """The contract can fail: a math module that imported the runner would be named."""
    fake = {**{m: set(v) for m, v in import_graph()[0].items()}}
    fake["pgjax.losses"].add("pgjax.run.runner")
    assert _violations(fake, lambda m: m in MATH, lambda t: t in MATH) == [
        "pgjax.losses imports pgjax.run.runner"]
    fake["pgjax.run.saved"].add("pgjax.report.load")
    assert _cycle(fake) is not None


def assert_reads_without_jax(*folders: Path) -> None:
    """Import the report and read each run or study folder in a fresh interpreter: no JAX, flax
    or optax module may be loaded."""
    code = ("import sys, json\nimport pgjax.report, pgjax.study\nfrom pgjax.report.load import load_run\n"
            "runs = [load_run(p) for p in sys.argv[1:]]\n"
            "print(json.dumps({'members': [len(r.members) for r in runs], 'loaded': sorted("
            "m for m in ('jax', 'jaxlib', 'flax', 'optax', 'orbax') if m in sys.modules)}))")
    done = subprocess.run([sys.executable, "-c", code, *map(str, folders)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == [], result
    assert all(n > 0 for n in result["members"]), result


def test_benchmark_scripts_import_the_installed_package():
    """Benchmarks run as ``python -m benchmarks.NAME`` from the repository root and import pgjax as
    installed: none edits ``sys.path``."""
    edits = [p.name for p in sorted((ROOT / "benchmarks").rglob("*.py"))
             if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert edits == []


def _architecture_layer_block() -> str:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    return text.split("```", 2)[1]


def test_architecture_names_every_module_and_only_real_ones():
    """ARCHITECTURE.md's layer list is checked against the source: every top-level module and
    package of pgjax (and envs/) is named in it, and every path it names exists."""
    block = _architecture_layer_block()
    named = set(re.findall(r"\b(?:pgjax|envs)/[\w/]*(?:\.py)?", block))
    missing_paths = sorted(p for p in named if not (ROOT / p).exists())
    assert missing_paths == [], f"ARCHITECTURE.md names paths that do not exist: {missing_paths}"
    entries = [p for p in sorted((ROOT / "pgjax").iterdir())
               if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()]
    unnamed = [p.name for p in entries
               if f"pgjax/{p.name}" not in block and not re.search(rf"\b{re.escape(p.name)}", block)]
    assert unnamed == [], f"ARCHITECTURE.md's layer list does not name: {unnamed}"
