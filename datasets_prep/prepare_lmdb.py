"""Pack a folder of images into an image LMDB, or export an LSUN LMDB to image files.

    python -m datasets_prep.prepare_lmdb --input IMAGES --output data/ffhq-lmdb --resolution 256
    python -m datasets_prep.prepare_lmdb --lsun_export church_outdoor_train_lmdb --output church_images

Packing writes the layout of datasets_prep/lmdb_io.py, read by ``--dataset celeba_256``,
``ffhq_256`` and ``folder``.  Images are taken in sorted path order, scaled (shorter side,
Lanczos) and centre-cropped to ``--resolution``, and stored as PNG; a file that is already
RGB, square at that size and PNG/JPEG/WebP is stored as its original bytes (it decodes to
the very same pixels).  Files that do not decode are skipped and counted.

Interrupting is safe: the database is written to ``OUTPUT.partial`` in transactions that
also record how far the work got, and is renamed to ``OUTPUT`` only when complete.
Running the same command again resumes where the last committed transaction ended.
"""

import argparse
import contextlib
import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import sys

import lmdb
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from datasets_prep.common import DataError, fit_square
from datasets_prep.folder import find_images
from datasets_prep.lmdb_io import LENGTH_KEY, PARTIAL_SUFFIX, PROGRESS_KEY, image_key, open_readonly, release
from datasets_prep.lsun import find_lsun_lmdb
from utils.argtypes import positive_int

COMMIT_EVERY = 256
INITIAL_MAP_SIZE = 1 << 30
KEEP_FORMATS = ("PNG", "JPEG", "WEBP")
SHOW_SKIPPED = 10
_EXTENSIONS = {b"RIFF": ".webp", b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp"}


def encode_image_file(path, resolution):
    """The bytes to store for one image file, or None if it does not decode."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if image.size == (resolution, resolution) and image.mode == "RGB" and image.format in KEEP_FORMATS:
        return data
    buffer = io.BytesIO()
    fit_square(image.convert("RGB"), resolution).save(buffer, format="PNG")
    return buffer.getvalue()


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
            pool = stack.enter_context(multiprocessing.Pool(workers))
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


def prepare(input_dir, output, resolution=256, workers=1):
    """Pack ``input_dir``'s images into the LMDB ``output``; returns the final progress record."""
    if os.path.exists(output):
        raise DataError(f"{output} already exists: delete it or choose another --output")
    files = find_images(input_dir, flag="--input")
    partial = output + PARTIAL_SUFFIX
    release(partial)
    os.makedirs(os.path.dirname(os.path.abspath(partial)), exist_ok=True)
    env = lmdb.open(partial, map_size=INITIAL_MAP_SIZE)
    try:
        progress = _load_progress(env, partial, _fingerprint(files, resolution))
        if progress is not None:
            _pack(env, input_dir, files, resolution, progress, workers)
            if not progress["stored"]:
                raise DataError(f"none of the {len(files)} image files under {input_dir} could be read: "
                                f"check them, then delete {partial}")
            _write(env, [(LENGTH_KEY, str(progress["stored"]).encode())], delete=[PROGRESS_KEY])
    finally:
        env.close()
    os.rename(partial, output)
    return progress


def _safe_name(key):
    """A file name for an LMDB key: the key itself when harmless, else its hex."""
    text = key.decode("ascii", errors="replace")
    return text if re.fullmatch(r"[\w.-]+", text) and not text.startswith(".") else key.hex()


def export_lsun(lmdb_path, output):
    """Write every image of an LSUN LMDB to ``output/<key>.<ext>``; existing files are kept
    (so an interrupted export resumes).  Returns (written, skipped non-images)."""
    path = find_lsun_lmdb(lmdb_path)
    if os.path.exists(output) and not os.path.isdir(output):
        raise DataError(f"--output {output} is a file: give a folder for the exported images")
    os.makedirs(output, exist_ok=True)
    written = skipped = 0
    with open_readonly(path).begin() as txn:
        for key, value in tqdm(txn.cursor(), total=txn.stat()["entries"], unit="img"):
            extension = next((ext for magic, ext in _EXTENSIONS.items() if value.startswith(magic)), None)
            if extension is None:
                skipped += 1
                continue
            target = os.path.join(output, _safe_name(key) + extension)
            if not os.path.exists(target):
                with open(target + ".tmp", "wb") as handle:
                    handle.write(value)
                os.replace(target + ".tmp", target)
            written += 1
    return written, skipped


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--input", help="folder of images to pack (searched recursively)")
    add("--output", required=True, help="LMDB folder to create (a folder of files with --lsun_export)")
    add("--resolution", type=positive_int, default=256, help="side of the stored square images")
    add("--lsun_export", metavar="LMDB", help="instead of packing: write an LSUN LMDB's images as files")
    add("--workers", type=positive_int, default=min(8, os.cpu_count() or 1),
        help="processes decoding and resizing images")
    args = parser.parse_args(argv)
    if (args.input is None) == (args.lsun_export is None):
        parser.error("pass either --input DIR (pack into an LMDB) or --lsun_export LMDB (write images out)")
    return args


def _report(progress, output, resolution):
    skipped = progress["skipped"] if progress else []
    stored = f"{progress['stored']} images" if progress else "the images"
    print(f"wrote {stored} ({resolution}x{resolution}) to {output}")
    if skipped:
        shown = ", ".join(skipped[:SHOW_SKIPPED]) + (", ..." if len(skipped) > SHOW_SKIPPED else "")
        print(f"skipped {len(skipped)} unreadable files: {shown}", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.lsun_export:
            written, skipped = export_lsun(args.lsun_export, args.output)
            print(f"exported {written} images to {args.output}; skipped {skipped} values that are not images")
        else:
            progress = prepare(args.input, args.output, args.resolution, args.workers)
            _report(progress, args.output, args.resolution)
    except DataError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit("interrupted: committed work is kept; run the same command again to resume")


if __name__ == "__main__":
    main()
