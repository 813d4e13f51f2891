"""watchkeeper's native feature reader (Rust): prediction events' features into columns."""

from collections.abc import Sequence

import numpy as np

def read_features(
    records: Sequence[bytes], numeric: list[str], categorical: list[str]
) -> tuple[np.ndarray, list[list[str | None]]] | None:
    """The ``features`` of raw prediction records as columns, or None for a batch outside the reader's subset.

    Returns the (records × numeric) float64 matrix (NaN: not sent or null) and, per
    categorical name, its values (None: not sent or null). See ``native/src/lib.rs``.
    """
