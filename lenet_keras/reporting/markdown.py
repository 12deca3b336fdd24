"""Text from the data (class names, run and data set names) made safe for REPORT.md.

A class name is a folder name a user chose: it may hold ``|`` (which would split a table row), HTML
(which Markdown renders raw), ``$...$`` (GitHub renders it as math), a newline (which ends a table
row) or any other Markdown syntax. ``escape`` makes it literal text wherever it lands: a table
cell, a heading or a line.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

# CommonMark lets any ASCII punctuation be escaped with a backslash, which then stands for itself
# (GFM tables honour ``\|`` too). Escaped: what starts or ends inline syntax anywhere in a line
# (code, emphasis, strike-through, links and images, HTML and entities, math, table cells,
# headings' closing #s). Not escaped: what matters only at the start of a line (``-``, ``+``,
# ``1.``), which a name never is here, and an ``_`` between two letters or digits, which never
# starts emphasis; so CIFAR-100's "aquarium_fish" and "non-insect" read as written in the raw file.
_SYNTAX = re.compile(r"(?<![^\W_])_|_(?![^\W_])|[\\`*\[\]<>&|$~#]")


def _printable(char: str) -> str:
    """Line breaks and other control characters would end a table row or be invisible: a space."""
    return " " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char


def escape(text: str) -> str:
    """``text`` as literal Markdown text on one line (table cells, headings, captions)."""
    text = "".join(_printable(char) for char in str(text))
    return _SYNTAX.sub(lambda match: "\\" + match.group(0), text)


def image(alt: str, filename: str) -> str:
    """A Markdown image of a PNG beside REPORT.md, whatever characters its name holds."""
    return f"![{escape(alt)}]({urllib.parse.quote(filename)})"
