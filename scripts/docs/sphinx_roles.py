"""Griffe extension for the docs site: Sphinx roles in docstrings become links.

The package's docstrings cross-reference with Sphinx roles (``:class:`~a.b.C```), which
Markdown would print literally. Each becomes an *optional* mkdocs-autorefs reference: a link
when the target is on a reference page, plain code otherwise (so ``mkdocs build --strict``
does not fail on a reference to a private helper).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _autoref(match: re.Match[str]) -> str:
    shorten, target = match.group(1), match.group(2).strip()
    title = target.rsplit(".", 1)[-1] if shorten else target
    return (
        f'<autoref identifier="{html.escape(target)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def convert(text: str) -> str:
    """``text`` with every Sphinx role replaced by an optional autoref."""
    return ROLE.sub(_autoref, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the docstring of every object griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
