"""watchkeeper's native event reader (Rust): prediction events into dicts and feature columns."""

from collections.abc import Sequence
from typing import Any

import numpy as np

class PendingEvents:
    """A batch of prediction records being read by threads of their own (see ``start_events``)."""

    def result(self) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, list[list[str | None]]] | None:
        """The events read, or None for a batch outside the reader's subset.

        Returns each record's fields but its features as a dict (``timestamp`` in epoch
        seconds, ``metadata`` left out), the event times (float64), the (records × numeric)
        float64 matrix of the numeric features (NaN: not sent or null) and, per categorical
        name, its values (None: not sent or null); waits, without the GIL, for the threads.
        Raises RuntimeError when called a second time. See ``native/src/lib.rs``.
        """

def start_events(records: Sequence[bytes], numeric: list[str], categorical: list[str]) -> PendingEvents:
    """Start reading raw prediction records (their features into columns); returns at once.

    Raises ValueError for a name given twice, TypeError for a record that is not bytes.
    """
