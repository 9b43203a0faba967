"""What every setting of an algorithm means, read from its dataclasses (host side).

``pgjax train ALGO --help`` lists every config field and hyperparameter with its type, default and
the one-line comment written beside it in the dataclass (``name: type = default  # meaning``), so
the help cannot drift from the code. A subclass's comment overrides its base's.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldDoc:
    name: str
    kind: str      # "config" (static: changes the program) or "hparam" (traced: vmappable)
    type: str
    default: str
    meaning: str


def _comments(klass) -> dict[str, str]:
    """``{field: comment}`` of the annotated assignments in ``klass``'s own source."""
    try:
        source = inspect.getsource(klass)
    except (OSError, TypeError):
        return {}
    found, line_name = {}, {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        row = token.start[0]
        if token.type == tokenize.NAME and row not in line_name and token.start[1] == 4:
            line_name[row] = token.string
        elif token.type == tokenize.COMMENT and row in line_name:
            found.setdefault(line_name[row], token.string.lstrip("#").strip())
    return found


def _type_name(annotation) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def describe(cls, kind: str) -> list[FieldDoc]:
    """The fields of dataclass ``cls`` with their type, default and comment."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # subclasses last, so their comments win
        comments.update(_comments(klass))
    hints = typing.get_type_hints(cls) if not isinstance(cls, str) else {}
    docs = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        type_name = _type_name(hints.get(f.name, f.type))
        if kind == "hparam":
            type_name = "float (vmappable)"
        docs.append(FieldDoc(f.name, kind, type_name, repr(default), comments.get(f.name, "")))
    return docs


def describe_algorithm(algo) -> list[FieldDoc]:
    """Every setting of an algorithm module: its Config fields, then its Hparams."""
    return [d for d in describe(algo.Config, "config") if d.name != "env_overrides"] + \
        describe(algo.Hparams, "hparam")


def help_text(algo) -> str:
    """The settings section of ``pgjax train ALGO --help``."""
    docs = describe_algorithm(algo)
    width = max(len(d.name) for d in docs)
    lines = [f"settings of {algo.NAME} (--set NAME=VALUE; hyperparameters also --sweep NAME=V1,V2;",
             "environment parameters as --set env.FIELD=VALUE):", ""]
    for kind, title in (("config", "config (static: shapes and the compiled program)"),
                        ("hparam", "hyperparameters (numbers in the train state: vmappable)")):
        lines.append(f"{title}:")
        for d in docs:
            if d.kind == kind:
                meaning = f"  {d.meaning}" if d.meaning else ""
                lines.append(f"  {d.name.ljust(width)}  {d.type} = {d.default}{meaning}")
        lines.append("")
    return "\n".join(lines)
