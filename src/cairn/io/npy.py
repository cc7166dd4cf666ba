"""numpy arrays stored in the ``.npy`` format, never with pickled Python objects inside."""

from __future__ import annotations

import io
import sys
from typing import Any, Final

from cairn.core.records import StoredValue
from cairn.errors import SerializationError
from cairn.io.ports import Store, write_object

FORMAT: Final = "npy"
PYTYPE: Final = "numpy"


def is_ndarray(value: object) -> bool:
    """True for a numpy array (a masked array is not one: ``.npy`` would drop its mask)."""
    numpy = sys.modules.get("numpy")
    if numpy is None or not isinstance(value, numpy.ndarray):
        return False
    masked = sys.modules.get("numpy.ma")
    return masked is None or not isinstance(value, masked.MaskedArray)


def dump_array(value: Any, store: Store) -> StoredValue:
    """Write an array as one ``.npy`` object, hashed while written.

    Raises:
        SerializationError: the array holds Python objects, which ``.npy`` can only store pickled.
    """
    import numpy as np  # here, not on top: the start-up budget (DESIGN §5)

    if value.dtype.hasobject:
        raise SerializationError(
            f"cannot store a numpy array of dtype {value.dtype} as .npy: it holds Python objects, which "
            "would have to be pickled. Convert it (e.g. arr.astype(str) or a numeric dtype), or pass "
            'io="pickle".'
        )
    # A Fortran-ordered array is written in C order, so equal arrays give equal bytes in any layout.
    array = np.ascontiguousarray(value) if not value.flags.c_contiguous and value.flags.f_contiguous else value
    digest, size = write_object(store, lambda sink: np.save(sink, array, allow_pickle=False))
    return StoredValue(digest, size, FORMAT, PYTYPE)


def load_array(data: bytes) -> Any:
    """Read verified ``.npy`` bytes; pickled contents are refused."""
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)
