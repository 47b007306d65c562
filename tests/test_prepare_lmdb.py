"""prepare_lmdb.py: lossless round trips, resumable interruption (also by a full disk), the LSUN
export, --check, and where output may go.  One-line CLI errors: tests/test_bad_inputs.py DATA_CASES."""

import errno
import os
import signal

import lmdb
import numpy as np
import pytest
from PIL import Image

from datasets_prep import DataError
from datasets_prep import prepare_lmdb as tool
from datasets_prep.common import fit_square
from datasets_prep.lmdb_io import ImageLmdb, find_image_lmdb, image_key
from tests._data_formats import decode, random_images, write_image_folder, write_lsun_lmdb
from tests.conftest import run_command, visible_lines

PREPARE = "-m datasets_prep.prepare_lmdb"
REAL_ENCODE = tool.encode_image_file


def read_all(path):
    """{key: value} of an LMDB."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = {bytes(key): bytes(value) for key, value in txn.cursor()}
    env.close()
    return items


def test_round_trip_is_lossless(tmp_path):
    images = random_images(6, 16, 16)
    paths = write_image_folder(tmp_path / "in", images)  # PNG and JPEG files, nested
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "new" / "db"), resolution=16)
    stored = read_all(tmp_path / "new" / "db")
    assert stored[b"length"] == b"6"
    for index, name in enumerate(sorted(paths)):
        source = (tmp_path / "in" / name).read_bytes()
        assert stored[image_key(16, index)] == source  # right size: the original bytes
        assert np.array_equal(decode(stored[image_key(16, index)]), decode(source))
    assert not os.path.exists(str(tmp_path / "new" / "db") + ".partial")


def test_resized_and_converted_images_are_png(tmp_path):
    (tmp_path / "in").mkdir()
    wide = random_images(1, 20, 36)[0]
    Image.fromarray(wide).save(tmp_path / "in" / "a_wide.png")
    rgba = np.concatenate([random_images(1, 8, 8, seed=1)[0], np.full((8, 8, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "in" / "b_rgba.png")
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=8)
    stored = read_all(tmp_path / "db")
    expected = np.asarray(fit_square(Image.fromarray(wide), 8))
    assert stored[image_key(8, 0)].startswith(b"\x89PNG")
    assert np.array_equal(decode(stored[image_key(8, 0)]), expected)
    assert np.array_equal(decode(stored[image_key(8, 1)]), rgba[..., :3])


def test_unreadable_files_are_skipped_and_counted(tmp_path, capsys):
    write_image_folder(tmp_path / "in", random_images(3, 8, 8), nested=False)
    (tmp_path / "in" / "img001.jpg").write_bytes(b"truncated")
    tool.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "db"), "--resolution", "8"])
    captured = capsys.readouterr()
    assert "wrote 2 images (8x8)" in captured.out
    assert "skipped 1 unreadable files: img001.jpg" in captured.err
    assert read_all(tmp_path / "db")[b"length"] == b"2"


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 image files .* could be read"):
        tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=8)


def interrupt_after(monkeypatch, count):
    """Make the count+1-th image encoding raise KeyboardInterrupt, like Ctrl-C."""
    calls = []

    def encode(path, resolution):
        calls.append(path)
        if len(calls) > count:
            raise KeyboardInterrupt
        return REAL_ENCODE(path, resolution)

    monkeypatch.setattr(tool, "encode_image_file", encode)
    return calls


def test_interrupted_run_is_refused_then_resumed(tmp_path, monkeypatch):
    images = random_images(11, 8, 8)
    write_image_folder(tmp_path / "in", images, nested=False)
    monkeypatch.setattr(tool, "COMMIT_EVERY", 4)
    interrupt_after(monkeypatch, 6)
    output, partial = tmp_path / "db", str(tmp_path / "db") + ".partial"
    with pytest.raises(KeyboardInterrupt):
        tool.prepare(str(tmp_path / "in"), str(output), resolution=8)
    assert not output.exists() and os.path.isdir(partial)
    assert image_key(8, 3) in read_all(partial) and image_key(8, 4) not in read_all(partial)
    with pytest.raises(DataError, match="is unfinished .*re-run the same prepare_lmdb command"):
        find_image_lmdb(str(output))
    with pytest.raises(DataError, match="unfinished prepare_lmdb output"):
        ImageLmdb(partial, 8, flip=False)

    calls = interrupt_after(monkeypatch, 100)
    tool.prepare(str(tmp_path / "in"), str(output), resolution=8)
    assert len(calls) == 7  # resumed at the last commit (after 4 images), not from the start
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "clean"), resolution=8)
    assert read_all(output) == read_all(tmp_path / "clean")
    assert len(ImageLmdb(str(output), 8, flip=False)) == 11


def test_ctrl_c_in_the_cli_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """A real SIGINT to this process while the second image is encoded: exit 130, one line, the
    committed images kept for the next run."""
    calls = []

    def encode(path, resolution):
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return REAL_ENCODE(path, resolution)

    write_image_folder(tmp_path / "in", random_images(3, 8, 8), nested=False)
    monkeypatch.setattr(tool, "encode_image_file", encode)
    with pytest.raises(SystemExit) as stop:
        tool.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "db"), "--workers", "1"])
    assert stop.value.code == 128 + signal.SIGINT
    assert visible_lines(capsys.readouterr().err) == [
        "stopped by SIGINT: committed work is kept; run the same command again to resume"]


def test_resume_with_other_input_is_refused(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "in", random_images(3, 8, 8), nested=False)
    monkeypatch.setattr(tool, "COMMIT_EVERY", 1)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=8)
    with pytest.raises(DataError, match="started with another --input or --resolution"):
        tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=16)


def test_finished_but_not_renamed_is_completed(tmp_path, monkeypatch):
    def killed_before_rename(source, target):
        raise KeyboardInterrupt

    write_image_folder(tmp_path / "in", random_images(2, 8, 8), nested=False)
    monkeypatch.setattr(tool.os, "rename", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=8)
    monkeypatch.undo()
    assert tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=8) is None
    assert read_all(tmp_path / "db")[b"length"] == b"2"


def test_worker_pool_gives_the_same_database(tmp_path):
    write_image_folder(tmp_path / "in", random_images(5, 12, 10), nested=False)
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "one"), resolution=8, workers=1)
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "two"), resolution=8, workers=2)
    assert read_all(tmp_path / "one") == read_all(tmp_path / "two")


def test_lsun_export_writes_the_original_bytes(tmp_path):
    images = random_images(3, 8, 8)
    keys = write_lsun_lmdb(str(tmp_path / "church_outdoor_train_lmdb"), images)
    result = run_command(PREPARE, "--lsun_export", tmp_path, "--output", tmp_path / "out")
    assert result.returncode == 0 and "exported 3 images" in result.stdout
    values = read_all(tmp_path / "church_outdoor_train_lmdb")
    for key, image in zip(keys, images, strict=True):
        written = tmp_path / "out" / (key.decode() + ".webp")
        assert written.read_bytes() == values[key]
        assert np.array_equal(decode(written.read_bytes()), image)
    (tmp_path / "out" / (keys[0].decode() + ".webp")).unlink()
    tool.main(["--lsun_export", str(tmp_path), "--output", str(tmp_path / "out")])  # fills in what is missing
    assert len(os.listdir(tmp_path / "out")) == 3


def test_cli_missing_input(tmp_path):
    result = run_command(PREPARE, "--input", tmp_path / "missing", "--output", tmp_path / "db")
    assert result.returncode == 1
    expected = f"error: --input {tmp_path}/missing is not a folder: pass a folder of images"
    assert result.stderr.strip() == expected


@pytest.mark.parametrize(("argv", "message"), [
    (["--input", "{tmp}/empty", "--output", "{tmp}/db"], "error: no images"),
    (["--input", "{tmp}/empty", "--output", "{tmp}"], "error: {tmp} already exists: delete it"),
    (["--output", "{tmp}/db"], "pass one of --input DIR"),
    (["--input", "{tmp}", "--lsun_export", "{tmp}", "--output", "{tmp}/db"], "pass one of --input DIR"),
    (["--input", "{tmp}/empty"], "--output is required"),
    (["--input", "{tmp}", "--output", "{tmp}/db", "--resolution", "0"], "0 is out of range"),
    (["--lsun_export", "{tmp}/empty", "--output", "{tmp}/out"], "error: no LSUN LMDB in"),
    (["--lsun_export", "{tmp}/lsun", "--output", "{tmp}/lsun/data.mdb"], "is a file: give a folder"),
])
def test_cli_errors(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    write_lsun_lmdb(str(tmp_path / "lsun"), random_images(1, 8, 8))
    with pytest.raises(SystemExit) as exit_info:
        tool.main([arg.format(tmp=tmp_path) for arg in argv])
    code = exit_info.value.code
    assert code not in (0, None)
    assert message.format(tmp=tmp_path) in capsys.readouterr().err + (code if isinstance(code, str) else "")


# --- where the output may go --------------------------------------------------------------------


@pytest.mark.parametrize("inside", ["", "db", "sub/db"])
def test_output_inside_the_input_is_refused(tmp_path, inside):
    write_image_folder(tmp_path / "in", random_images(2, 8, 8), nested=False)
    before = sorted(os.listdir(tmp_path / "in"))
    output = os.path.join(tmp_path / "in", inside) if inside else str(tmp_path / "in")
    with pytest.raises(DataError, match=r"--output .* is inside --input .*: choose an --output outside"):
        tool.prepare(str(tmp_path / "in"), output, resolution=8)
    assert sorted(os.listdir(tmp_path / "in")) == before


def test_output_under_a_file_is_refused(tmp_path):
    write_image_folder(tmp_path / "in", random_images(1, 8, 8), nested=False)
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(DataError, match=r"cannot be created: .*notes is a file, not a folder"):
        tool.prepare(str(tmp_path / "in"), str(tmp_path / "notes" / "db"), resolution=8)
    write_lsun_lmdb(str(tmp_path / "lsun"), random_images(1, 8, 8))
    with pytest.raises(DataError, match=r"cannot be created: .*notes is a file, not a folder"):
        tool.export_lsun(str(tmp_path / "lsun"), str(tmp_path / "notes" / "out"))


def test_lsun_export_into_its_own_lmdb_is_refused(tmp_path):
    write_lsun_lmdb(str(tmp_path / "lsun"), random_images(1, 8, 8))
    with pytest.raises(DataError, match="is inside the LMDB .*: choose a folder outside it"):
        tool.export_lsun(str(tmp_path / "lsun"), str(tmp_path / "lsun" / "images"))
    assert sorted(os.listdir(tmp_path / "lsun")) == ["data.mdb", "lock.mdb"]


# --- a disk that fills up ----------------------------------------------------------------------


def test_disk_full_while_packing_keeps_the_committed_work(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "in", random_images(5, 8, 8), nested=False)
    monkeypatch.setattr(tool, "COMMIT_EVERY", 2)
    real_write, calls = tool._write, []

    def fills_up(env, items, delete=()):
        calls.append(items)
        if len(calls) == 2:
            raise lmdb.DiskError("mdb_txn_commit: No space left on device")
        real_write(env, items, delete)

    monkeypatch.setattr(tool, "_write", fills_up)
    with pytest.raises(SystemExit, match=r"error: disk full while writing .*db.partial: the first 2 of 5 images "
                                         r"are committed in .* and kept; free some space, then run the same"):
        tool.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "db"), "--workers", "1"])
    monkeypatch.setattr(tool, "_write", real_write)
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=256)
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "clean"), resolution=256)
    assert read_all(tmp_path / "db") == read_all(tmp_path / "clean")


def test_disk_full_while_exporting_leaves_no_partial_file(tmp_path, monkeypatch):
    write_lsun_lmdb(str(tmp_path / "church_outdoor_train_lmdb"), random_images(3, 8, 8))
    real_replace = os.replace

    def fills_up(source, target):
        if len(os.listdir(tmp_path / "out")) > 1:  # the first image and the second's temporary file
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(tool.os, "replace", fills_up)
    with pytest.raises(DataError, match=r"disk full while writing .*: the 1 images exported so far are kept in"):
        tool.export_lsun(str(tmp_path), str(tmp_path / "out"))
    assert len(os.listdir(tmp_path / "out")) == 1 and not any(name.endswith(".tmp")
                                                               for name in os.listdir(tmp_path / "out"))
    monkeypatch.undo()
    assert tool.export_lsun(str(tmp_path), str(tmp_path / "out")) == (3, 0)


# --- --check -----------------------------------------------------------------------------------


def _damage(path, key, value=b"\x89PNG cut short"):
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_check_lists_every_unreadable_image(tmp_path, workers):
    write_image_folder(tmp_path / "in", random_images(6, 8, 8), nested=False)
    tool.prepare(str(tmp_path / "in"), str(tmp_path / "db"), resolution=8)
    (tmp_path / "in" / "img001.jpg").write_bytes(b"truncated")
    (tmp_path / "in" / "img004.png").write_bytes(b"")
    _damage(tmp_path / "db", image_key(8, 3))
    keys = sorted(write_lsun_lmdb(str(tmp_path / "lsun"), random_images(3, 8, 8)))
    _damage(tmp_path / "lsun", keys[0])
    expected = {"in": (6, ["in/img001.jpg", "in/img004.png"]), "db": (6, ["db key 8-00003"]),
                "lsun": (3, [f"lsun key {keys[0].decode()}"])}
    for data, (total, unreadable) in expected.items():
        count, problems = tool.find_unreadable(str(tmp_path / data), 8, workers)
        assert count == total
        assert [problem.split(" is not a readable image")[0] for problem in problems] == [
            f"{tmp_path}/{name}" for name in unreadable]


def test_check_command_line(tmp_path):
    write_image_folder(tmp_path / "in", random_images(3, 8, 8), nested=False)
    result = run_command(PREPARE, "--check", tmp_path / "in", "--workers", 1)
    assert result.returncode == 0 and f"all 3 images of {tmp_path}/in decode" in result.stdout
    (tmp_path / "in" / "img002.png").write_bytes(b"nope")
    result = run_command(PREPARE, "--check", tmp_path / "in", "--workers", 1)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{tmp_path}/in/img002.png is not a readable image")
    assert result.stderr.splitlines()[-1] == (f"error: 1 of 3 images of {tmp_path}/in are unreadable (listed "
                                              "above): delete or re-encode them")
