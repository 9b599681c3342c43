"""MkDocs hooks: an offline user guide, and gradflow's docstring roles rendered as code.

Offline mathematics
    The pages' formulas are typeset in the reader's browser by MathJax 3, and the MathJax files
    the pages load are part of the built site: they are copied at build time from the Python
    package ``django-static-mathjax`` (MathJax 3.2.2, Apache-2.0; installed by the ``docs`` and
    ``test`` extras of pyproject.toml). Only what the pages use is copied (the TeX-to-CommonHTML
    component, its web fonts, the TeX extensions it may autoload, and MathJax's licence) into
    ``site/mathjax/``, so nothing is fetched from a CDN when a page is read.

Offline code highlighting
    Code blocks are coloured at build time by Pygments (``pymdownx.highlight``); the style sheet
    ``stylesheets/pygments.css`` is generated here from a Pygments style, so no highlight.js is
    loaded from a CDN either.

Docstring roles
    The docstrings say ``:class:`~gradflow.Flow``` and ``:func:`gradflow.decay_rate```;
    mkdocstrings passes them through as ``:class:<code>~gradflow.Flow</code>``. This turns them
    into plain ``<code>Flow</code>`` (a leading ``~`` keeps only the last name, as in Sphinx).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|obj):<code>(~?)([^<]+)</code>")

MATHJAX_PACKAGE = "django-static-mathjax"     # the PyPI distribution that ships MathJax 3
MATHJAX_DEST = "mathjax"                       # where the site keeps it: site/mathjax/tex-chtml.js
# what the pages need from MathJax's es5/ folder: the combined TeX → CommonHTML component, the
# fonts it loads relative to itself, and the TeX extensions it autoloads on first use
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")
PYGMENTS_STYLE = "default"
PYGMENTS_CSS = "stylesheets/pygments.css"


def mathjax_root() -> Path:
    """The installed MathJax distribution folder (it holds ``es5/`` and ``LICENSE``)."""
    spec = importlib.util.find_spec("mathjax")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            root = Path(location) / "static" / "mathjax"
            if (root / "es5" / "tex-chtml.js").is_file():
                return root
    raise PluginError(
        f"MathJax is not installed: the user guide bundles it from the PyPI package "
        f"{MATHJAX_PACKAGE} (pip install -e \".[docs]\", or pip install {MATHJAX_PACKAGE})")


def mathjax_files(root: Path) -> list[tuple[str, Path]]:
    """(site path, installed file) for every MathJax file the site ships."""
    es5 = root / "es5"
    found = [(f"{MATHJAX_DEST}/LICENSE", root / "LICENSE")]
    for part in MATHJAX_PARTS:
        source = es5 / part
        paths = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        found += [(f"{MATHJAX_DEST}/{p.relative_to(es5).as_posix()}", p) for p in paths]
    return found


def on_files(files, config, **kwargs):
    for uri, path in mathjax_files(mathjax_root()):
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    from pygments.formatters import HtmlFormatter

    css = "/* Generated at build time by docs/hooks.py from the Pygments style "
    css += f"'{PYGMENTS_STYLE}'. */\n" + HtmlFormatter(style=PYGMENTS_STYLE).get_style_defs(".highlight")
    files.append(File.generated(config, PYGMENTS_CSS, content=css + "\n"))
    return files


def _code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_code, html)
