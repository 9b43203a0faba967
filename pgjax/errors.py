"""The errors the math layer raises for a bad argument: one family, rooted at :class:`ArgumentError`.

Every function of :mod:`pgjax.estimators`, :mod:`pgjax.losses`, :mod:`pgjax.distributions`
and :mod:`pgjax.diagnostics` checks its arguments when it is called (or traced, under
``jax.jit``: shapes and dtypes are static, so the checks cost nothing in the compiled program) and
refuses a bad one with an error of this family, never a bare ``AssertionError``, a broadcasting
error or a scan-carry mismatch from deep inside:

    ArgumentError                  .function, .argument: who refused what
    ├── ArgumentValueError         (also a ValueError) a value outside what is allowed
    │   └── ShapeError             a wrong shape or rank (e.g. [T, 4] where [T, 5] is needed)
    └── ArgumentTypeError          (also a TypeError) a kind of argument that is not accepted
        └── DtypeError             a wrong dtype (e.g. integer rewards)

The built-in bases keep ``except ValueError`` / ``except TypeError`` working; ``except
ArgumentError`` catches the whole family. The message is one line that starts with
``"<function>: <argument>"``:

    >>> import jax.numpy as jnp
    >>> from pgjax.estimators import td_errors
    >>> from pgjax.errors import ShapeError
    >>> try:
    ...     td_errors(jnp.zeros((3, 2)), jnp.zeros((3, 4)), jnp.zeros((3, 2)), 0.9)
    ... except ShapeError as error:
    ...     print(error.function, error.argument)
    td_errors values

This module imports nothing but the standard library.
"""

from __future__ import annotations

__all__ = ["ArgumentError", "ArgumentValueError", "ArgumentTypeError", "ShapeError", "DtypeError"]


class ArgumentError(Exception):
    """A math-layer function refused one of its arguments.

    Attributes:
      function: the public name of the function that refused it, e.g. ``"gae"`` or
        ``"Categorical.log_prob"``.
      argument: the name of the refused argument, e.g. ``"values"``.
    """

    def __init__(self, function: str, argument: str, message: str):
        super().__init__(message)
        self.function = function
        self.argument = argument

    def __reduce__(self):  # picklable across processes, like the built-in errors
        return type(self), (self.function, self.argument, str(self))


class ArgumentValueError(ArgumentError, ValueError):
    """An argument's value is outside what the function accepts (e.g. ``n < 1``)."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument is of a kind the function does not accept (e.g. a traced value where a static
    Python int sets the program's structure, or two different kinds of distribution)."""


class ShapeError(ArgumentValueError):
    """An array argument has the wrong shape or rank (the math layer never broadcasts between
    per-step arrays, so a mismatch is refused rather than averaged over the wrong pairs)."""


class DtypeError(ArgumentTypeError):
    """An array argument has the wrong dtype (e.g. integer rewards, float actions of a
    categorical policy)."""
