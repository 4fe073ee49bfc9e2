"""Unpickling that can only rebuild plain containers and NumPy arrays.

The CIFAR python files are pickles. A pickle can run arbitrary code on load, so these are read
with an unpickler that refuses every global except the handful NumPy needs to rebuild an array.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 2 pickles spell byte strings
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a data file")


def restricted_load(handle: IO[bytes]) -> Any:
    """Load a pickle of dicts, lists, strings, numbers and NumPy arrays (latin-1 for Python 2)."""
    return RestrictedUnpickler(handle, encoding="latin1").load()


def restricted_loads(data: bytes) -> Any:
    return restricted_load(io.BytesIO(data))
