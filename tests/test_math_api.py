"""The math layer as a library: declared public API, lazy access from ``import pgjax``, imports
that stay light (no flax, optax or host side), docstrings that stand alone."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from pgjax import distributions, estimators, losses

MATH_MODULES = {"pgjax.estimators": estimators, "pgjax.losses": losses,
                "pgjax.distributions": distributions}
# what the math layer must not pull in: flax (linen), optax, environments, the host side
HEAVY = ("flax", "optax", "gymnax", "pgjax.envs", "pgjax.algorithms", "pgjax.run", "pgjax.report",
         "pgjax.cli", "pgjax.config", "pgjax.networks", "pgjax.rollout", "pgjax.pure_train")


def _fresh_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"JAX_PLATFORMS": "cpu", **_env()})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env():
    import os
    return {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}


def test_math_layer_imports_without_flax_optax_or_the_host_side():
    loaded = _fresh_python(
        "import json, sys; import pgjax.losses, pgjax.estimators, pgjax.distributions; "
        "print(json.dumps(sorted(sys.modules)))")
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


def test_submodules_are_lazy_attributes_of_pgjax():
    state = _fresh_python(
        "import json, sys; import pgjax; before = 'pgjax.losses' in sys.modules; "
        "names = [pgjax.losses.__name__, pgjax.estimators.__name__, pgjax.distributions.__name__]; "
        "print(json.dumps({'before': before, 'names': names, 'jax': 'jax' in sys.modules, "
        "'all': pgjax.__all__, 'dir': 'losses' in dir(pgjax)}))")
    assert state["before"] is False and state["jax"] is True
    assert state["names"] == ["pgjax.losses", "pgjax.estimators", "pgjax.distributions"]
    assert {"losses", "estimators", "distributions"} <= set(state["all"]) and state["dir"]
    import pgjax
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        pgjax.nonexistent  # noqa: B018


@pytest.mark.parametrize("name", list(MATH_MODULES))
def test_all_declares_exactly_the_public_api(name):
    module = MATH_MODULES[name]
    defined = {n for n, obj in vars(module).items()
               if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
               and obj.__module__ == module.__name__}
    assert defined <= set(module.__all__), defined - set(module.__all__)
    for n in module.__all__:
        assert hasattr(module, n), n


@pytest.mark.parametrize("name", list(MATH_MODULES))
def test_docstrings_stand_alone(name):
    # Each public function: a summary, Args and Returns; no pointers to material users cannot see.
    module = MATH_MODULES[name]
    docs = {name: module.__doc__}
    for n in module.__all__:
        obj = getattr(module, n)
        if inspect.isfunction(obj):
            doc = inspect.getdoc(obj)
            assert doc and "Args:" in doc and "Returns:" in doc, n
            docs[n] = doc
        elif inspect.isclass(obj):
            docs[n] = inspect.getdoc(obj)
            for m, member in vars(obj).items():
                if not m.startswith("_") and inspect.isfunction(member):
                    assert inspect.getdoc(member), f"{n}.{m}"
                    docs[f"{n}.{m}"] = inspect.getdoc(member)
    for where, doc in docs.items():
        for banned in ("slide", "seed", "DESIGN.md", "shared/"):
            assert banned not in (doc or ""), (where, banned)
