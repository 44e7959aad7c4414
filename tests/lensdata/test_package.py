"""The package face: light to import, every public name resolves, its errors are the data layer's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lensdata


def test_importing_the_package_and_its_light_modules_loads_no_heavy_library():
    code = ("import sys, lensdata, lensdata.errors, lensdata.instruments, lensdata.names, lensdata.recipe\n"
            "print(sorted(m for m in ('numpy', 'pyarrow', 'torch', 'caustics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", lensdata.__all__)
def test_every_public_name_resolves(name):
    assert getattr(lensdata, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        lensdata.no_such_thing  # noqa: B018


def test_the_data_layer_raises_its_own_errors():
    from lensdata.errors import DataError, DatasetError

    assert issubclass(DatasetError, DataError)
    with pytest.raises(DataError, match="unknown instrument 'model9'; choose one of model1, model2, model3"):
        lensdata.get_instrument("model9")
