"""watchkeeper's native feature reader (Rust): prediction events' features into columns."""

from collections.abc import Sequence

import numpy as np

class PendingFeatures:
    """A batch's features being read by threads of their own (see ``start_features``)."""

    def result(self) -> tuple[np.ndarray, list[list[str | None]]] | None:
        """The features as columns, or None for a batch outside the reader's subset.

        Returns the (records × numeric) float64 matrix (NaN: not sent or null) and, per
        categorical name, its values (None: not sent or null); waits, without the GIL, for
        the threads. Raises RuntimeError when called a second time. See ``native/src/lib.rs``.
        """

def start_features(records: Sequence[bytes], numeric: list[str], categorical: list[str]) -> PendingFeatures:
    """Start reading the ``features`` of raw prediction records into columns; returns at once.

    Raises ValueError for a name given twice, TypeError for a record that is not bytes.
    """
