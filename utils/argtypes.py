"""Argument types and the argument parser of every command line in this repository.

One definition of each: ``ranged`` numbers (floats must be finite), ``port``, ``device``,
and ``ArgumentParser``, whose errors are one line (``prog: error: ...``) with exit status 2
and which reads negative numbers such as ``-1e-4`` as values, so that the range check
(not argparse's "expected one argument") says what is wrong.  This module imports nothing
else of the project, so every package may use it.
"""

import argparse
import math
import re
import sys

import torch

# argparse's own pattern misses exponents (-1e-4) and -inf / -nan.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with one-line errors and negative numbers taken as values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def parse_args_explicit(self, argv=None):
        """(namespace, set of the dests given on the command line); defaults fill the rest."""
        unset = object()
        dests = [action.dest for action in self._actions if argparse.SUPPRESS not in (action.dest, action.default)]
        args = self.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(dests, unset)))
        explicit = {dest for dest in dests if getattr(args, dest) is not unset}
        for dest in set(dests) - explicit:
            setattr(args, dest, self._default_of(dest))
        return args, explicit

    def _default_of(self, dest):
        """The default of ``dest``, converted by its type as argparse does for string defaults."""
        action = next(action for action in self._actions if action.dest == dest)
        default = self.get_default(dest)
        if isinstance(default, str) and action.type is not None:
            return self._get_value(action, default)
        return default

    def error(self, message):
        """``prog: error: message (see --help)`` on stderr, exit status 2 (argparse's status)."""
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def ranged(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a ``kind`` (int or float) within its bounds; floats must be finite.

    ``low_open`` / ``high_open`` exclude the bound itself.  The error names the range.
    """

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            bounds = _bounds(low, high, low_open, high_open)
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bounds}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _bounds(low, high, low_open, high_open):
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


positive_int = ranged(int, 1)
nonneg_int = ranged(int, 0)
finite_float = ranged(float)
positive_float = ranged(float, 0.0, low_open=True)
nonneg_float = ranged(float, 0.0)
unit_float = ranged(float, 0.0, 1.0)  # [0, 1]
open_unit_float = ranged(float, 0.0, 1.0, high_open=True)  # [0, 1), e.g. Adam's betas, EMA decay


def folder_name(text):
    """One folder name (a run's --exp): not empty, no path separator, not "." or ".."."""
    if text in ("", ".", "..") or "/" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder name: use letters, digits, '-', '_' or '.'"
                                         " without '/'")
    return text


seed = ranged(int, 0, 2**63 - 1)


def port(text):
    """A TCP port 0..65535 (0: pick a free one)."""
    value = nonneg_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port: use 1..65535, or 0 for a free one")
    return value


def device(text):
    """``--device`` everywhere: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        value = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if value.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use auto, cpu, cuda or cuda:N")
    if value.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available here, use --device cpu")
    if value.index is not None and value.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: only {torch.cuda.device_count()} GPU(s) are visible")
    return value
