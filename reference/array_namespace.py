"""Which array library an input belongs to: NumPy by default, CuPy for CuPy arrays.

CuPy is optional and imported only when a CuPy array is actually passed in, so this
package never imports it at module import time.
"""
import numpy as np


def array_namespace(*arrays):
    """Return the array module (numpy or cupy) of the first CuPy array among `arrays`, else numpy."""
    for a in arrays:
        if a is not None and type(a).__module__.split(".")[0] == "cupy":
            import cupy  # noqa: PLC0415 -- optional dependency, only when given cupy arrays

            return cupy
    return np

