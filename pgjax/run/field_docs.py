"""What every setting of an algorithm means, read from its dataclasses (host side).

Each field of a ``Config`` or ``Hparams`` is declared once, beside itself, with
:func:`pgjax.config.setting` (type, allowed range or choices, help text). ``pgjax train ALGO --help``
and the documentation's CLI reference list what :func:`describe_algorithm` reads from those
declarations, so the help cannot drift from the checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pgjax.config import settings_of

_TYPE_NAMES = {"int": "int", "float": "float", "bool": "bool", "str": "str",
               "ints": "tuple[int, ...]", "floats": "tuple[float, ...]", "pairs": "name:value pairs"}


@dataclass(frozen=True)
class FieldDoc:
    name: str
    kind: str      # "config" (static: changes the program) or "hparam" (traced: vmappable)
    type: str      # int, float, bool, str, tuple[int, ...], name:value pairs; float (vmappable)
    default: str   # repr of the default
    allowed: str   # the range or choices, in words (what an error message says)
    help: str      # what the setting means


def describe(cls, kind: str) -> list[FieldDoc]:
    """The fields of declared dataclass ``cls``: type, default, allowed values and help."""
    declared = settings_of(cls)
    docs = []
    for f in dataclasses.fields(cls):
        setting = declared[f.name]
        type_name = "float (vmappable)" if kind == "hparam" else _TYPE_NAMES[setting.type]
        docs.append(FieldDoc(f.name, kind, type_name, repr(f.default), setting.allowed,
                             setting.help))
    return docs


def describe_algorithm(algo) -> list[FieldDoc]:
    """Every setting of an algorithm module: its Config fields (but ``env_overrides``, which the
    command line sets as ``env.FIELD=VALUE``), then its Hparams."""
    return [d for d in describe(algo.Config, "config") if d.name != "env_overrides"] + \
        describe(algo.Hparams, "hparam")


def help_text(algo) -> str:
    """The settings section of ``pgjax train ALGO --help``: ``name  type = default  help
    [allowed]`` per setting."""
    docs = describe_algorithm(algo)
    width = max(len(d.name) for d in docs)
    lines = [f"settings of {algo.NAME} (--set NAME=VALUE; hyperparameters also --sweep NAME=V1,V2;",
             "environment parameters as --set env.FIELD=VALUE):", ""]
    for kind, title in (("config", "config (static: shapes and the compiled program)"),
                        ("hparam", "hyperparameters (numbers in the train state: vmappable)")):
        lines.append(f"{title}:")
        for d in docs:
            if d.kind == kind:
                lines.append(f"  {d.name.ljust(width)}  {d.type} = {d.default}  {d.help} "
                             f"[{d.allowed}]")
        lines.append("")
    return "\n".join(lines)
