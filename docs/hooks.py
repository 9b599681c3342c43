"""MkDocs hook: render the Sphinx cross-reference roles of gradflow's docstrings as code.

The docstrings say ``:class:`~gradflow.Flow``` and ``:func:`gradflow.decay_rate```; mkdocstrings
passes them through as ``:class:<code>~gradflow.Flow</code>``. This turns them into plain
``<code>Flow</code>`` (a leading ``~`` keeps only the last name, as in Sphinx).
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|obj):<code>(~?)([^<]+)</code>")


def _code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_code, html)
