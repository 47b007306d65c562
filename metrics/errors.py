"""MetricError: what the user can fix, said in one line."""

from contextlib import contextmanager

from utils.files import error_line


class MetricError(ValueError):
    """A metric that cannot be computed with the given inputs; the message (one line) says what to do."""


@contextmanager
def metric_errors():
    """Turn the ValueErrors and OSErrors of reading inputs (missing or damaged files, bad arrays, absent
    Inception weights) into a MetricError with their one-line message."""
    try:
        yield
    except MetricError:
        raise
    except (OSError, ValueError) as err:
        raise MetricError(error_line(err)) from err
