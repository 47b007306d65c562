"""DataError, the one exception of datasets_prep; imports nothing, so any module may raise it."""

_WORKER_REPORT = "Original Traceback (most recent call last):"


class DataError(ValueError):
    """A data set that is missing, incomplete or unreadable; the message is one line that names
    the file (or LMDB key) and says how to fix it.

    A DataLoader worker's exception reaches the main process as ``DataError(report)``, the
    report being the worker's whole traceback; only the original message is kept from it.
    """

    def __init__(self, message=""):
        super().__init__(one_line(str(message)))


def one_line(message):
    """``message`` on one line; of a DataLoader worker's report, the original message alone."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if _WORKER_REPORT in lines:
        name, _, original = lines[-1].partition(": ")
        if name.endswith("DataError"):
            return original
    return " ".join(lines)
