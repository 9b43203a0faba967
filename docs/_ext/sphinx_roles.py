"""Griffe extension for the API reference: turn the Sphinx roles used in pgjax's docstrings
(:func:`gae`, :class:`~pgjax.distributions.Categorical`, ...) into Markdown.

mkdocstrings renders docstrings as Markdown, where a role would show up literally. A role whose
target is rendered in the reference (a public object with a docstring in one of the documented
modules) becomes a cross-reference link; any other becomes inline code. Nothing is ever left
unresolved, so ``mkdocs build --strict`` cannot fail on a reference to, say, the host side.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`([^`]+)`")
DOCUMENTED = ("pgjax.estimators", "pgjax.losses", "pgjax.distributions", "pgjax.trust_region",
              "pgjax.diagnostics", "pgjax.errors")  # the modules with a page under docs/api/


def _objects(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg, **kwargs) -> None:
        if pkg.path != "pgjax":
            return
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda m: self._replace(pkg, obj, m.group(1)),
                                               obj.docstring.value)

    @staticmethod
    def _target(pkg, path: str):
        if not path.startswith("pgjax.") or not path.startswith(DOCUMENTED):
            return None
        try:
            target = pkg[path[len("pgjax."):]]
        except (KeyError, ValueError):
            return None
        parts = path.split(".")
        public = not any(part.startswith("_") for part in parts)
        rendered = target.is_module or target.docstring is not None
        return target if (public and rendered and not target.is_alias) else None

    def _replace(self, pkg, obj, text: str) -> str:
        name = text.lstrip("~.")
        shown = name.rsplit(".", 1)[-1] if text.startswith("~") else name
        scopes = [obj.path, obj.module.path, "pgjax"] if not obj.is_module else [obj.path, "pgjax"]
        for scope in ([""] if name.startswith("pgjax.") else [s + "." for s in scopes]):
            if self._target(pkg, scope + name) is not None:
                return f"[`{shown}`][{scope + name}]"
        return f"`{shown}`"
