"""Write one benchmark's results into its own section of BENCHMARKS.md.

Each benchmark script owns the block between `<!-- section:NAME -->` and
`<!-- /section:NAME -->` and replaces only that block, so scripts can be rerun one at a time
without clobbering each other's results or hand-written text around them.
"""

from __future__ import annotations

import re
from pathlib import Path

from exporters.atomic import atomic_write_bytes

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun the script to refresh it.\n"


def markers(section_name: str) -> tuple[str, str]:
    """The opening and closing marker lines of a section."""
    if not _NAME.match(section_name):
        raise ValueError(f"section name must match {_NAME.pattern} (got {section_name!r})")
    return f"<!-- section:{section_name} -->", f"<!-- /section:{section_name} -->"


def update_section(section_name: str, markdown: str, path: Path = Path("BENCHMARKS.md")) -> Path:
    """Replace (or append) the named section in `path`, keeping everything else byte for byte.

    The file is created with a short header if missing, and written atomically (temp file in
    the same directory, fsync, rename), so an interrupted run never truncates it.
    Raises ValueError if the file has an opening marker without its closing one (or the
    markers more than once): guessing where the section ends could delete someone's text.
    """
    start, end = markers(section_name)
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    block = f"{start}\n{markdown.strip()}\n{end}"
    n_start, n_end = text.count(start), text.count(end)
    if (n_start, n_end) == (0, 0):
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    elif (n_start, n_end) == (1, 1) and text.index(start) < text.index(end):
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end) :]
        text = before + block + after
    else:
        raise ValueError(
            f"{path}: section {section_name!r} has {n_start} opening and {n_end} closing markers; fix them by hand"
        )
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


