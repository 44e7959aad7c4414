"""MkDocs hook: the evaluation companion's files as the site needs them, without editing them.

MkDocs publishes a README.md as its directory's index.html, but docs/results/ already has one: the companion's
own page, which the campaign runner writes. mkdocs.yml leaves the README out of the walk (else MkDocs drops it
with a warning, which fails a strict build) and this hook puts it back at results/README.html, where its relative
links still point where they do on GitHub. Its link to the cells' folder, ``cells/``, gets an index page listing
each cell's table, as GitHub lists the folder.
"""

from __future__ import annotations

import posixpath

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel

README, README_DEST = "results/README.md", "results/README.html"
CELLS = "results/cells"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File(README, config.docs_dir, config.site_dir, config.use_directory_urls,
                      dest_uri=README_DEST, inclusion=InclusionLevel.INCLUDED))
    files.append(File.generated(config, f"{CELLS}/index.md", content=_cells_index(files),
                                inclusion=InclusionLevel.NOT_IN_NAV))
    return files


def _cells_index(files: Files) -> str:
    tables = sorted(f.src_uri for f in files if f.src_uri.startswith(f"{CELLS}/") and f.src_uri.endswith(".md"))
    rows = [f"- [{posixpath.basename(posixpath.dirname(t))}]({posixpath.relpath(t, CELLS)})" for t in tables]
    head = "# The companion's cells\n\nEach comparison cell's own table and paired verdict:\n\n"
    return head + "\n".join(rows) + "\n"
