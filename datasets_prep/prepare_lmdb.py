"""Pack a folder of images into an image LMDB, export an LSUN LMDB to image files, or check a data set.

    python -m datasets_prep.prepare_lmdb --input IMAGES --output data/ffhq-lmdb --resolution 256
    python -m datasets_prep.prepare_lmdb --lsun_export church_outdoor_train_lmdb --output church_images
    python -m datasets_prep.prepare_lmdb --check IMAGES_OR_LMDB

Packing writes the layout of datasets_prep/lmdb_io.py, read by ``--dataset celeba_256``,
``ffhq_256`` and ``folder``.  Images are taken in sorted path order, scaled (shorter side,
Lanczos) and centre-cropped to ``--resolution``, and stored as PNG; a file that is already
RGB, square at that size and PNG/JPEG/WebP is stored as its original bytes (it decodes to
the very same pixels).  Files that do not decode are skipped and counted.

One prepare_lmdb at a time writes an ``--output`` (an advisory lock on ``OUTPUT.lock``,
removed when it ends); a second one stops with a line naming the first.
Interrupting is safe: the database is written to ``OUTPUT.partial`` in transactions that
also record how far the work got, and is renamed to ``OUTPUT`` only when complete.
Running the same command again resumes where the last committed transaction ended (also
after the disk filled up).

``--check`` decodes every image of a folder, an image LMDB or an LSUN LMDB and lists the
unreadable ones (exit status 1 if there are any).
"""

import contextlib
import errno
import functools
import hashlib
import io
import json
import os
import re
import sys

import lmdb
from tqdm import tqdm

from datasets_prep.common import fit_square, open_image, read_file
from datasets_prep.errors import DataError
from datasets_prep.folder import ImageFolder, find_images
from datasets_prep.lmdb_io import (
    LENGTH_KEY,
    PARTIAL_SUFFIX,
    PROGRESS_KEY,
    ImageLmdb,
    holds_indexed_images,
    image_key,
    is_lmdb,
    open_readonly,
    release,
)
from datasets_prep.lsun import LsunLmdb, find_lsun_lmdb
from utils import files, signals
from utils.argtypes import ArgumentParser, positive_int
from utils.images import to_rgb
from utils.locks import FolderLock

COMMIT_EVERY = 256
INITIAL_MAP_SIZE = 1 << 30
KEEP_FORMATS = ("PNG", "JPEG", "WEBP")
SHOW_SKIPPED = 10
LOCK_SUFFIX = ".lock"  # OUTPUT.lock: held while OUTPUT is written
_EXTENSIONS = {b"RIFF": ".webp", b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp"}


def encode_image_file(path, resolution):
    """The bytes to store for one image file, or None if it cannot be read or decoded."""
    try:
        data = read_file(path)
        image = open_image(data, path)
    except DataError:
        return None
    if image.size == (resolution, resolution) and image.mode == "RGB" and image.format in KEEP_FORMATS:
        return data
    buffer = io.BytesIO()
    fit_square(to_rgb(image), resolution).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- where output may go

def _inside(path, folder):
    """True if ``path`` is ``folder`` or lies under it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def require_writable(path):
    """DataError naming ``--output path`` unless it can be created: its nearest existing ancestor must
    be a folder this process may write in.  Checked before anything is written."""
    parent = files.existing_ancestor(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(parent):
        raise DataError(f"--output {path} cannot be created: {parent} is a file, not a folder; "
                        "choose another --output")
    if not files.can_create_in(parent):
        raise DataError(f"--output {path} cannot be created: no permission to write in {parent}; "
                        "choose another --output")


def _check_pack_output(input_dir, output):
    if input_dir and _inside(output, input_dir):
        raise DataError(f"--output {output} is inside --input {input_dir}: choose an --output outside "
                        "the folder of images")
    if os.path.lexists(output):
        raise DataError(f"{output} already exists: delete it or choose another --output")
    require_writable(output + PARTIAL_SUFFIX)


# ----------------------------------------------------------------------------- packing

def _fingerprint(files, resolution):
    """Identifies the job, so a resume with another --input or --resolution is refused."""
    return hashlib.sha1("\n".join([str(resolution), *files]).encode()).hexdigest()


def _write(env, items, delete=()):
    """Put ``items`` and delete keys in one transaction, growing the map when it is full."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
                for key in delete:
                    txn.delete(key)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def _load_progress(env, partial, fingerprint):
    """The recorded progress of ``partial`` (fresh if new); refuses a different job."""
    with env.begin() as txn:
        record, length = txn.get(PROGRESS_KEY), txn.get(LENGTH_KEY)
    if record is None and length is not None:
        return None  # complete; only the final rename was missed
    fresh = {"fingerprint": fingerprint, "done": 0, "stored": 0, "skipped": []}
    progress = json.loads(record) if record else fresh
    if progress["fingerprint"] != fingerprint:
        raise DataError(f"{partial} was started with another --input or --resolution: "
                        f"re-run with the original ones, or delete {partial} to start over")
    return progress


def _encoded_batches(input_dir, files, resolution, start, workers):
    """Yield (relative path, bytes or None) from ``files[start:]``, in order."""
    encode = functools.partial(encode_image_file, resolution=resolution)
    paths = (os.path.join(input_dir, name) for name in files[start:])
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(signals.process_pool(workers))
            results = pool.imap(encode, paths, chunksize=8)
        else:
            results = map(encode, paths)
        yield from zip(files[start:], results, strict=True)


def _pack(env, input_dir, files, resolution, progress, workers):
    """Encode and store the remaining files, committing every COMMIT_EVERY files."""
    items = []
    batches = _encoded_batches(input_dir, files, resolution, progress["done"], workers)
    with tqdm(total=len(files), initial=progress["done"], unit="img") as bar, contextlib.closing(batches):
        for name, data in batches:
            if data is None:
                progress["skipped"].append(name)
            else:
                items.append((image_key(resolution, progress["stored"]), data))
                progress["stored"] += 1
            progress["done"] += 1
            bar.update()
            if progress["done"] % COMMIT_EVERY == 0 or progress["done"] == len(files):
                _write(env, [*items, (PROGRESS_KEY, json.dumps(progress).encode())])
                items = []


def _open_partial(partial):
    """The writable environment of ``partial`` (created with its parent folders if new)."""
    release(partial)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(partial)), exist_ok=True)
        return lmdb.open(partial, map_size=INITIAL_MAP_SIZE)
    except (OSError, lmdb.Error) as error:
        reason = getattr(error, "strerror", None) or error
        raise DataError(f"cannot create {partial} ({reason}): choose another --output") from None


def _committed(env):
    """How many input files the last committed transaction of a partial LMDB covers."""
    with env.begin() as txn:
        record = txn.get(PROGRESS_KEY)
    return json.loads(record)["done"] if record else 0


def _write_failed(env, partial, error, total):
    """DataError for a write that failed part-way: what is kept, and how to go on."""
    kept = f"the first {_committed(env)} of {total} images are committed in {partial} and kept"
    if isinstance(error, lmdb.DiskError):
        return DataError(f"disk full while writing {partial}: {kept}; free some space, then run the "
                         "same command again to resume")
    return DataError(f"writing {partial} failed ({error}): {kept}; fix the cause, then run the same "
                     "command again to resume")


def prepare(input_dir, output, resolution=256, workers=1):
    """Pack ``input_dir``'s images into the LMDB ``output``; returns the final progress record
    (None if an earlier run had finished all but the final rename)."""
    _check_pack_output(input_dir, output)
    lock = FolderLock(output + LOCK_SUFFIX, lambda holder: (
        f"{output} is being written by another prepare_lmdb ({holder}): wait for it to end, or choose "
        "another --output"), error=DataError, remove=True)
    try:
        lock.acquire(check=lambda: _check_pack_output(input_dir, output))
    except OSError as err:
        raise DataError(f"cannot create {lock.path} ({err.strerror or err}): choose another --output") from None
    with lock:
        return _prepare_locked(input_dir, output, resolution, workers)


def _prepare_locked(input_dir, output, resolution, workers):
    files = find_images(input_dir, flag="--input")
    partial = output + PARTIAL_SUFFIX
    env = _open_partial(partial)
    try:
        progress = _load_progress(env, partial, _fingerprint(files, resolution))
        if progress is not None:
            _pack(env, input_dir, files, resolution, progress, workers)
            if not progress["stored"]:
                raise DataError(f"none of the {len(files)} image files under {input_dir} could be read: "
                                f"check them, then delete {partial}")
            _write(env, [(LENGTH_KEY, str(progress["stored"]).encode())], delete=[PROGRESS_KEY])
    except lmdb.Error as error:
        raise _write_failed(env, partial, error, len(files)) from None
    finally:
        env.close()
    os.rename(partial, output)
    return progress


# ----------------------------------------------------------------------------- LSUN export

def _safe_name(key):
    """A file name for an LMDB key: the key itself when harmless, else its hex."""
    text = key.decode("ascii", errors="replace")
    return text if re.fullmatch(r"[\w.-]+", text) and not text.startswith(".") else key.hex()


def _write_file(target, value, written, output):
    """Write ``value`` to ``target`` through a temporary name; DataError (nothing half-written) if it fails."""
    temporary = target + ".tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(value)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        kept = f"the {written} images exported so far are kept in {output}"
        if error.errno == errno.ENOSPC:
            raise DataError(f"disk full while writing {target}: {kept}; free some space, then run the "
                            "same command again to export the rest") from None
        raise DataError(f"cannot write {target} ({error.strerror}): {kept}; check --output") from None


def _make_export_folder(lmdb_path, output):
    if os.path.lexists(output) and not os.path.isdir(output):
        raise DataError(f"--output {output} is a file: give a folder for the exported images")
    if _inside(output, lmdb_path):
        raise DataError(f"--output {output} is inside the LMDB {lmdb_path}: choose a folder outside it")
    if not os.path.isdir(output):
        require_writable(output)
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create --output {output} ({error.strerror}): choose another --output") from None


def export_lsun(lmdb_path, output):
    """Write every image of an LSUN LMDB to ``output/<key>.<ext>``; existing files are kept
    (so an interrupted export resumes).  Returns (written, skipped non-images)."""
    path = find_lsun_lmdb(lmdb_path)
    _make_export_folder(path, output)
    written = skipped = 0
    with open_readonly(path).begin() as txn:
        for key, value in tqdm(txn.cursor(), total=txn.stat()["entries"], unit="img"):
            extension = next((ext for magic, ext in _EXTENSIONS.items() if value.startswith(magic)), None)
            if extension is None:
                skipped += 1
                continue
            target = os.path.join(output, _safe_name(key) + extension)
            if not os.path.exists(target):
                _write_file(target, value, written, output)
            written += 1
    return written, skipped


# ----------------------------------------------------------------------------- checking

def open_images(path, resolution):
    """The decoded-image data set at ``path``: a folder of images, an image LMDB or an LSUN LMDB."""
    if not is_lmdb(path):
        return ImageFolder(path, resolution, flip=False, flag="--check")
    if holds_indexed_images(path):
        return ImageLmdb(path, resolution, flip=False)
    return LsunLmdb(path, resolution, flip=False)


_CHECKED = None  # the data set a --check worker decodes (set once per worker, not sent per task)


def _use_dataset(dataset):
    global _CHECKED
    _CHECKED = dataset


def _problem(index):
    """Why item ``index`` of the checked data set does not decode, or None."""
    try:
        _CHECKED.load(index)
    except DataError as error:
        return str(error)
    return None


def find_unreadable(path, resolution=256, workers=1):
    """(number of images, messages naming each unreadable one) of the data set at ``path``."""
    dataset = open_images(path, resolution)
    _use_dataset(dataset)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(signals.process_pool(workers, _use_dataset, (dataset,)))
            problems = pool.imap(_problem, range(len(dataset)), chunksize=64)
        else:
            problems = map(_problem, range(len(dataset)))
        found = [problem for problem in tqdm(problems, total=len(dataset), unit="img") if problem]
    return len(dataset), found


# ----------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--input", help="folder of images to pack (searched recursively)")
    add("--output", help="LMDB folder to create (a folder of files with --lsun_export)")
    add("--resolution", type=positive_int, default=256, help="side of the stored square images")
    add("--lsun_export", metavar="LMDB", help="instead of packing: write an LSUN LMDB's images as files")
    add("--check", metavar="DATA", help="instead of packing: list the images of a folder or LMDB that do not decode")
    add("--workers", type=positive_int, default=min(8, os.cpu_count() or 1),
        help="processes decoding and resizing images")
    args = parser.parse_args(argv)
    if sum(mode is not None for mode in (args.input, args.lsun_export, args.check)) != 1:
        parser.error("pass one of --input DIR (pack into an LMDB), --lsun_export LMDB (write images out) "
                     "or --check DATA (list unreadable images)")
    if args.check is None and not args.output:
        parser.error("--output is required with --input and --lsun_export")
    return args


def _report(progress, output, resolution):
    skipped = progress["skipped"] if progress else []
    stored = f"{progress['stored']} images" if progress else "the images"
    print(f"wrote {stored} ({resolution}x{resolution}) to {output}")
    if skipped:
        shown = ", ".join(skipped[:SHOW_SKIPPED]) + (", ..." if len(skipped) > SHOW_SKIPPED else "")
        print(f"skipped {len(skipped)} unreadable files: {shown}", file=sys.stderr)


def _run(args):
    if args.check:
        total, problems = find_unreadable(args.check, args.resolution, args.workers)
        print("\n".join(problems) or f"all {total} images of {args.check} decode")
        if problems:
            raise DataError(f"{len(problems)} of {total} images of {args.check} are unreadable (listed above): "
                            "delete or re-encode them")
    elif args.lsun_export:
        written, skipped = export_lsun(args.lsun_export, args.output)
        print(f"exported {written} images to {args.output}; skipped {skipped} values that are not images")
    else:
        progress = prepare(args.input, args.output, args.resolution, args.workers)
        _report(progress, args.output, args.resolution)


def main(argv=None):
    args = parse_args(argv)
    try:
        with signals.raising():
            _run(args)
    except DataError as error:
        sys.exit(f"error: {error}")
    except signals.Stopped as stop:
        print(f"stopped by {stop}: committed work is kept; run the same command again to resume", file=sys.stderr)
        sys.exit(stop.code)


if __name__ == "__main__":
    main()
