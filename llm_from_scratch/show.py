"""Show things in a notebook: the package's real source (so what the book prints is what runs),
and characters a plot or a listing cannot show.

>>> text = str(source(source))
>>> text.splitlines()[0]
'```python'
"""

from __future__ import annotations

import inspect
import textwrap

__all__ = ["source", "show_char"]


class _Source:
    """Source text that renders as highlighted code in Jupyter and prints as plain text elsewhere."""

    def __init__(self, code: str):
        self.code = code

    def _repr_markdown_(self) -> str:
        return f"```python\n{self.code}\n```"

    def __str__(self) -> str:
        return self._repr_markdown_()

    def __repr__(self) -> str:
        return self.code


def source(*objects) -> _Source:
    """The source code of functions, classes or methods, one after the other.

    ``source(ops.softmax_forward, ops.softmax_backward)`` shows a forward/backward pair.
    """
    if not objects:
        raise ValueError("source() needs at least one function, class or method to show")
    parts = []
    for obj in objects:
        try:
            parts.append(textwrap.dedent(inspect.getsource(obj)).rstrip())
        except (TypeError, OSError) as exc:
            raise TypeError(f"cannot show the source of {obj!r}: {exc}") from exc
    return _Source("\n\n\n".join(parts))


_VISIBLE = {" ": "\u2423", "\n": "\u23ce"}  # OPEN BOX for a space, RETURN SYMBOL for a newline


def show_char(c: str) -> str:
    """A printable stand-in for a character a plot's tick label or a listing cannot show: "␣" for a
    space, "⏎" for a newline; any other character stands for itself.

    >>> "".join(show_char(c) for c in "a b\\n")
    'a␣b⏎'
    """
    return _VISIBLE.get(c, c)
