"""Stop signals: what a training, a sampling run and their helper processes do on SIGINT, SIGTERM, SIGHUP.

Clusters stop a job by signalling its whole process group (``timeout``, SLURM's preemption and
``scancel``, Kubernetes, systemd, a closed terminal), so the data-loader workers receive the signal
as well as the process that owns them.  The rule here: the owner decides, the helpers carry on.

* The main process of each rank records the signal (``StopRequest``) and stops at a safe point:
  training after its current iteration, with content.pth saved; work that may be dropped (an
  evaluation while training) is abandoned at once (``StopRequest.abandoning``).  A command that
  has nothing to save stops by unwinding (``raising``), which leaves its files consistent.
* DataLoader workers ignore the stop signals (``DataLoader``): they end when their loader shuts
  them down, or when their parent dies.  Left with the default action they would die at once, and
  the owner would see a "worker killed by signal" RuntimeError instead of the batch it waits for.
* multiprocessing's resource tracker (a process started by the first named semaphore: scikit-learn's
  joblib makes one at import) ignores SIGINT and SIGTERM but not SIGHUP; ``handled`` starts it with
  the stop signals blocked, so that a SIGHUP to the group does not kill it (its owner would warn
  "resource_tracker: process died unexpectedly" and the relaunched one print KeyError tracebacks).

Every stop exits with 128 + the signal number (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
A helper module: it imports no model code.
"""

import contextlib
import functools
import signal

import torch.utils.data

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_code(signum):
    """The shell's convention for a process stopped by ``signum``."""
    return 128 + signum


def signal_name(signum):
    return signal.Signals(signum).name


@contextlib.contextmanager
def handled(handler):
    """Within: ``handler(signum, frame)`` for every stop signal; the previous handlers come back after.
    Starts the resource tracker first (see the module docstring)."""
    start_resource_tracker()
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def deferred():
    """Within: stop signals wait (blocked in this thread); they are delivered when the block ends.
    Processes started within inherit the block, so they can set their own handlers before any arrives."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_resource_tracker():
    """Start multiprocessing's resource tracker now, if it is not running, with the stop signals
    blocked: it unblocks only the two it ignores, so SIGHUP stays blocked there for good."""
    from multiprocessing import resource_tracker

    with deferred():
        resource_tracker.ensure_running()


def ignore_stop_signals():
    """In a helper process: ignore the stop signals (a pending one is dropped), then unblock them."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _start_worker(user_init, worker_id):
    ignore_stop_signals()
    if user_init is not None:
        user_init(worker_id)


class DataLoader(torch.utils.data.DataLoader):
    """torch's DataLoader whose worker processes ignore stop signals (see the module docstring).

    Workers start with the signals blocked (``deferred``) and ignore them before unblocking, so no
    signal reaches them in between; ``worker_init_fn`` still runs after that."""

    def __init__(self, *args, worker_init_fn=None, **kwargs):
        super().__init__(*args, worker_init_fn=functools.partial(_start_worker, worker_init_fn), **kwargs)

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        with deferred():
            return super().__iter__()


def _start_pool_worker(user_init, *args):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if user_init is not None:
        user_init(*args)


def process_pool(processes, initializer=None, initargs=()):
    """A multiprocessing.Pool whose workers leave Ctrl-C to the main process, which stops them: no
    KeyboardInterrupt traceback from each worker.  (A SIGTERM to the group ends them silently.)"""
    import multiprocessing

    return multiprocessing.Pool(processes, _start_pool_worker, (initializer, *initargs))


class Abandoned(Exception):
    """Raised by a stop signal inside ``StopRequest.abandoning()``: the work of that block is dropped."""


class StopRequest:
    """Within ``with``: remember a stop signal so that a loop can stop at its next safe point; the
    previous handlers come back on exit.  Work that may be dropped runs in ``abandoning()``, where
    the signal interrupts it at once."""

    def __init__(self):
        self.signum = None
        self._abandon = False
        self._handled = None

    def __enter__(self):
        self._handled = handled(self._handle)
        self._handled.__enter__()
        return self

    def __exit__(self, *exc):
        self._handled.__exit__(*exc)

    def _handle(self, signum, frame):
        self.signum = signum
        if self._abandon:
            self._abandon = False
            raise Abandoned

    @contextlib.contextmanager
    def abandoning(self):
        """Within: a stop signal (or one received before) raises Abandoned instead of waiting for the block."""
        if self.requested:
            raise Abandoned
        self._abandon = True
        try:
            yield
        finally:
            self._abandon = False

    @property
    def requested(self):
        return self.signum is not None

    @property
    def name(self):
        return signal_name(self.signum)


class Stopped(BaseException):
    """A stop signal, raised in the main thread by ``raising()``; a BaseException, as KeyboardInterrupt
    is, so that no ``except Exception`` swallows it."""

    def __init__(self, signum):
        super().__init__(signal_name(signum))
        self.signum = signum
        self.code = exit_code(signum)


@contextlib.contextmanager
def raising():
    """Within: the first stop signal raises Stopped (later ones are ignored while it unwinds)."""
    seen = []

    def handler(signum, frame):
        if not seen:
            seen.append(signum)
            raise Stopped(signum)

    with handled(handler):
        yield
