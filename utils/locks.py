"""One job per output: an advisory lock (``flock``) held for the life of the job.

The kernel releases it when the process ends, however it ends (SIGKILL included), so a lock
file left behind never blocks the next job.  A forked child (a DataLoader worker, a pool process)
lets go of its copy of the lock at once: otherwise the children of a killed job, which outlive it
by seconds, would keep its lock and turn the next job away.  The file names its holder (pid, host, start
time, command), which is what a second job into the same output prints before it stops.
Used by training (the run folder), test_ddgan.py (the sample folder) and prepare_lmdb (the
database being written).
"""

import contextlib
import errno
import fcntl
import os
import socket
import sys
import time
import weakref

_HELD = weakref.WeakSet()  # the FolderLocks this process holds


def _let_go_in_child():
    """After a fork, in the child: close the inherited lock files (the lock stays with the parent, whose
    descriptor still refers to it) and forget them, so that nothing in the child releases or removes one."""
    for lock in list(_HELD):
        lock.handle.close()
        lock.handle = None
    _HELD.clear()


os.register_at_fork(after_in_child=_let_go_in_child)


class FolderLock:
    """The lock on the file ``path``; ``busy(holder)`` is the one-line message when it is taken, raised
    as ``error``.  With ``remove`` the file is deleted when the lock is let go (a job whose output
    should hold no trace of it); a killed job leaves it, and the next one takes it over."""

    def __init__(self, path, busy, error=ValueError, remove=False):
        self.path, self.busy, self.error, self.remove, self.handle = path, busy, error, remove, None

    def acquire(self, check=None):
        """Take the lock or raise ``error`` naming the holder; ``check()`` runs under the lock before
        this process writes its name (an error there releases the lock and changes nothing)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        handle = self._lock()
        try:
            if check is not None:
                check()
        except BaseException:
            self.handle = handle
            self.release()
            raise
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n")
        handle.flush()
        self.handle = handle
        _HELD.add(self)
        return self

    def _lock(self):
        """The open, locked lock file.  A file that its holder deleted while this process waited for it
        is no lock any more: then the new one at ``path`` is taken."""
        if os.path.isdir(self.path):
            raise self.error(f"{self.path} is a folder where a lock file goes: remove or rename it")
        while True:
            handle = open(self.path, "a+")  # noqa: SIM115 (held open for the life of the job)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise self.error(self.busy(holder)) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()

    def release(self):
        """Let the lock go (deleting its file first, while still holding it, with ``remove``)."""
        if self.handle is None:
            return
        _HELD.discard(self)
        if self.remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        self.handle.close()
        self.handle = None

    def __enter__(self):
        return self.acquire() if self.handle is None else self

    def __exit__(self, *exc):
        self.release()
