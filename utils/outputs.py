"""Where the sampling and metric command lines write, checked before anything is written, and the
sample folder with the manifest that says whether it is whole.

A sample folder (test_ddgan.py ``--sample_dir``) holds ``{index}.png`` for index 0..N-1,
``samples.npz`` (the same N images, uint8 (N, H, W, C), key ``samples``; never kept short) and
``manifest.json``::

    {"complete": false | true, "count": N, "image_shape": [H, W, C], "seed": 42, "batch_size": 200,
     "checkpoint": {"path": ..., "bytes": ..., "modified": ..., "epoch": E | null}, "written": ISO time}

The writer puts the manifest (``complete: false``) first, then removes the files of an earlier
run, writes the samples, and rewrites the manifest (``complete: true``) last, each write atomic.
Readers (``check_sample_folder``) refuse a folder whose manifest says incomplete (a run that was
killed or failed) or whose image files are not exactly 0..N-1.png; a folder without a manifest
is the user's own set of images and is taken as it is.  The writing run holds ``.lock`` (removed
when it ends; ``sample_folder_lock``), so that a second run into the same folder stops instead of mixing in.
"""

import json
import os
import re
import time

from utils.files import OutputError, atomic_write, check_writable_folder
from utils.locks import FolderLock

MANIFEST_NAME = "manifest.json"
NPZ_NAME = "samples.npz"
PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".lock"  # held by the run writing the folder (utils.locks); not a sample file
_SAMPLE_PNG = re.compile(r"^(0|[1-9][0-9]*)\.png$")


def png_name(index):
    return f"{index}.png"


def is_written_name(name):
    """Whether a sample writer owns a file of this name (and may replace or remove it)."""
    return bool(_SAMPLE_PNG.match(name)) or name in (NPZ_NAME, NPZ_NAME + PARTIAL_SUFFIX, MANIFEST_NAME)


# ----------------------------------------------------------------------------- checks before writing

def check_not_input(output, inputs, what):
    """OutputError if the file ``output`` is one of ``inputs`` ({flag: path} read by the same run)."""
    for flag, path in inputs.items():
        if path and _same(output, path):
            raise OutputError(f"{what} {output} is the {flag} file: it would be overwritten; "
                              f"choose another {what.split()[0]}")


def check_sample_folder_output(folder, inputs):
    """Before any sample is written to ``folder`` (``--sample_dir``): OutputError when it cannot
    take them.  ``inputs`` ({flag: path}) are read by the same run: the folder may not be one of
    them, nor hold one that the writer would replace.  An existing folder must be empty or a
    sample folder (it has a manifest): a user's own files are never mixed with samples."""
    check_writable_folder(folder, "--sample_dir")
    for flag, path in inputs.items():
        if not path:
            continue
        if _same(folder, path):
            raise OutputError(f"--sample_dir {folder} is the {flag} folder: the samples would overwrite or mix "
                              "with it; choose another --sample_dir")
        if _same(os.path.dirname(os.path.abspath(path)), folder) and is_written_name(os.path.basename(path)):
            raise OutputError(f"--sample_dir {folder} would replace {flag} {path}: choose another --sample_dir")
    if os.path.isdir(folder):
        _check_reusable(folder)


def sample_folder_lock(folder):
    """Taken (created if new) and held while one run writes and scores ``folder``: a second one into
    the same folder stops with OutputError naming the holder, instead of mixing its files in."""
    return FolderLock(os.path.join(folder, LOCK_NAME), lambda holder: (
        f"--sample_dir {folder} is in use by another sampling run ({holder}): wait for it to end, or choose "
        "another --sample_dir"), error=OutputError, remove=True).acquire()


def _check_reusable(folder):
    names = [name for name in os.listdir(folder) if name != LOCK_NAME]
    if names and MANIFEST_NAME not in names:
        raise OutputError(f"--sample_dir {folder} holds files but no {MANIFEST_NAME} (not written by "
                          "test_ddgan.py): choose an empty or new folder, so that samples are not mixed with them")
    for name in filter(is_written_name, names):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            raise OutputError(f"{path} is a folder where a sample file goes: remove it or choose another "
                              "--sample_dir")


def _same(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


# ----------------------------------------------------------------------------- the manifest

def checkpoint_record(path):
    """What the manifest says of the generator file: path, size, modification time, epoch (netG_{E}.pth)."""
    if path is None:
        return None
    stat = os.stat(path)
    match = re.fullmatch(r"netG_(\d+)\.pth", os.path.basename(path))
    return {"path": os.path.abspath(path), "bytes": stat.st_size,
            "modified": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stat.st_mtime)),
            "epoch": int(match[1]) if match else None}


def write_manifest(folder, **fields):
    """Write ``fields`` (and the time) as the folder's manifest, atomically."""
    text = json.dumps({**fields, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1)
    atomic_write(os.path.join(folder, MANIFEST_NAME), lambda f: f.write(text.encode()))


def clear_samples(folder):
    """Remove the files a sample writer owns (an earlier run's samples); the manifest stays."""
    for name in os.listdir(folder):
        if is_written_name(name) and name != MANIFEST_NAME:
            os.remove(os.path.join(folder, name))


def read_manifest(folder):
    """The manifest of ``folder`` (a dict), None if it has none; OutputError if it is unreadable."""
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            manifest = json.load(handle)
        count = manifest["count"]
        complete = manifest["complete"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OutputError(f"{path} is not a readable sample manifest ({type(err).__name__}): sample into a new "
                          "folder, or delete the manifest if the images are your own") from None
    if not isinstance(count, int) or count < 0 or not isinstance(complete, bool):
        raise OutputError(f"{path} has a bad count or complete flag: sample into a new folder")
    return manifest


def check_sample_folder(folder, image_names=None, rows=None):
    """Refuse (OutputError) to score a sample folder that is not whole.

    Without a manifest nothing is checked.  With one, it must say complete, the image files
    in the folder (``image_names``) must be exactly 0..count-1.png, and a samples.npz read from
    it must have ``rows`` = count (the PNGs may then be gone, but no other image be there).
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return
    count = manifest["count"]
    if not manifest["complete"]:
        raise OutputError(f"{folder} holds an unfinished sampling run ({MANIFEST_NAME}: complete false; the run "
                          "was stopped or failed): sample again, or delete the folder")
    if image_names is not None:
        _check_names(folder, set(image_names), count, missing_ok=rows is not None)
    if rows is not None and rows != count:
        raise OutputError(f"{folder}/{NPZ_NAME} has {rows} samples, its {MANIFEST_NAME} says {count}: "
                          "sample again into a new folder")


def _check_names(folder, names, count, missing_ok):
    expected = {png_name(index) for index in range(count)}
    extra, missing = sorted(names - expected), [] if missing_ok else sorted(expected - names)
    if extra or missing:
        example = (extra or missing)[0]
        raise OutputError(f"{folder} mixes a sampling run of {count} images with other files ({len(extra)} "
                          f"image files not from the run, {len(missing)} missing, e.g. {example}): "
                          "keep one run per folder (sample again into a new folder)")
