"""``no_sub``: the lens and the source alone, without substructure (label 0)."""

from __future__ import annotations

from lensdata.substructure import DarkMatterClass, register_class

NO_SUB = register_class(DarkMatterClass(name="no_sub", label=0))
