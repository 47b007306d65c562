"""File safety and one-line errors: the leaf helpers every package uses (it imports nothing of the project).

* ``atomic_write`` / ``atomic_save``: write to a temporary file beside the target, fsync, rename it
  over the target: readers see the old file or the whole new one, never a part.
* ``existing_ancestor``, ``can_create_in``, ``check_writable_folder``, ``check_output_file``: whether an
  output can be written, tried before anything is written (``OutputError``, one line with the fix).
* ``error_line``, ``os_error_line``, ``user_errors``: what a command line prints for an error the user
  can fix: one line, and exit status 1.
* ``downloads_allowed``: ``$DDGAN_NO_DOWNLOAD`` (tests, offline machines) turns every download off.
"""

import contextlib
import os
import tempfile

NO_DOWNLOAD_ENV_VAR = "DDGAN_NO_DOWNLOAD"


class OutputError(ValueError):
    """An output path that cannot be written as asked, or a sample folder that is not whole;
    the message is one line naming the path and the fix."""


# ----------------------------------------------------------------------------- writing

def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """``write(binary_file)`` into a temporary ``*.tmp`` file beside ``path``, fsync, then rename it
    over ``path``: readers see the old file or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """torch.save ``obj`` to ``path`` atomically."""
    import torch  # here: most users of this module write no tensors

    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------- checks before writing

def existing_ancestor(path):
    """``path`` or the nearest of its parents that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def can_create_in(folder):
    """Whether a file can be created in ``folder`` (tried: permissions alone do not stop root, and
    say nothing of read-only file systems)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_writable_folder(folder, what):
    """OutputError unless ``folder`` is, or can be made as, a writable folder (``what`` names the flag)."""
    path = os.path.abspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{what} {folder} is a file, not a folder: give a folder path")
    existing = existing_ancestor(path)
    if not os.path.isdir(existing):
        raise OutputError(f"{what} {folder} lies below the file {existing}: give a folder path")
    if not can_create_in(existing):
        raise OutputError(f"{what} {folder}: {existing} is not writable (permission denied): "
                          "choose a folder you can write to")


def check_output_file(path, what, overwrite=False):
    """OutputError unless ``path`` can be written as a file in a writable folder (and, unless
    ``overwrite``, is new)."""
    if os.path.isdir(path):
        raise OutputError(f"{what} {path} is a folder: give a file name")
    if not overwrite and os.path.lexists(path):
        raise OutputError(f"{what} {path} already exists: delete it or choose another name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(existing_ancestor(folder)):
        raise OutputError(f"{what} {path} lies below the file {existing_ancestor(folder)}: give a path in a folder")
    check_writable_folder(folder, f"the folder of {what}")


# ----------------------------------------------------------------------------- one-line errors

def error_line(err):
    """The one line to show for an error.  A DataLoader worker's error carries the worker's
    traceback in its message: only its last line (the original error) is kept."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[-1].removeprefix(f"{type(err).__name__}: ")


def os_error_line(err):
    """One line for an OSError: its message, and the file it concerns."""
    message = err.strerror or str(err)
    return f"{message}: {err.filename}" if err.filename else message


@contextlib.contextmanager
def user_errors(prog, kinds=(OSError, ValueError), whole=False):
    """Report what a user can fix (missing or unreadable files, bad values) as one line
    ``{prog}: error: ...``, exit status 1 (``whole``: the whole message, for one that lists lines below
    its first, such as the mismatched tensors of a checkpoint)."""
    try:
        yield
    except kinds as err:
        raise SystemExit(f"{prog}: error: {err if whole else error_line(err)}") from None


def downloads_allowed():
    """False when ``$DDGAN_NO_DOWNLOAD`` is set: nothing is fetched from the network."""
    return not os.environ.get(NO_DOWNLOAD_ENV_VAR)
