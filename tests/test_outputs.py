"""utils/outputs.py: where samples may be written, and when a sample folder may be scored."""

import os

import pytest

from tests._data_formats import unwritable_folder
from utils import files, outputs
from utils.outputs import OutputError


def sample_folder(path, count, complete=True, extra=()):
    """A folder as the sample writer leaves it: count PNG names, a manifest, and ``extra`` files."""
    path.mkdir(parents=True, exist_ok=True)
    for name in [outputs.png_name(i) for i in range(count)] + list(extra):
        (path / name).write_bytes(b"")
    outputs.write_manifest(path, complete=complete, count=count)
    return path


@pytest.mark.parametrize("name, owned", [("0.png", True), ("12.png", True), ("012.png", False),
                                         ("samples.npz", True), ("manifest.json", True), ("a.png", False),
                                         ("samples.npz.partial", True), ("1.jpg", False)])
def test_written_names(name, owned):
    assert outputs.is_written_name(name) == owned


def test_new_empty_or_sample_folders_take_samples(tmp_path):
    outputs.check_sample_folder_output(tmp_path / "new" / "deeper", {})
    (tmp_path / "empty").mkdir()
    outputs.check_sample_folder_output(tmp_path / "empty", {})
    outputs.check_sample_folder_output(sample_folder(tmp_path / "run", 3, complete=False), {})


@pytest.mark.parametrize("layout, inputs, message", [
    (lambda t: (t / "f").write_text("x"), {}, "is a file, not a folder"),
    (lambda t: (t / "f").write_text("x"), {}, "lies below the file"),
    (lambda t: (t / "out").mkdir(), {"--real_img_dir": "out"}, "is the --real_img_dir folder"),
    (lambda t: sample_folder(t / "out", 1), {"--real_img_dir": "out/samples.npz"}, "would replace --real_img_dir"),
    (lambda t: (t / "out").mkdir() or (t / "out" / "cat.png").write_text(""), {}, "holds files but no manifest"),
    (lambda t: sample_folder(t / "out", 1).joinpath("3.png").mkdir(), {}, "is a folder where a sample file goes"),
])
def test_folders_that_cannot_take_samples(tmp_path, monkeypatch, layout, inputs, message):
    monkeypatch.chdir(tmp_path)
    layout(tmp_path)
    target = {"is a file, not a folder": "f", "lies below the file": "f/sub"}.get(message, "out")
    with pytest.raises(OutputError, match=message):
        outputs.check_sample_folder_output(target, inputs)


def test_a_checkpoint_beside_the_samples_is_not_in_the_way(tmp_path):
    folder = sample_folder(tmp_path / "run", 2)
    (folder / "netG_5.pth").write_bytes(b"")
    outputs.check_sample_folder_output(folder, {"--checkpoint": str(folder / "netG_5.pth")})


def test_read_only_folder(tmp_path):
    locked = unwritable_folder(tmp_path)
    with pytest.raises(OutputError, match=f"--output_dir {locked}/out: {locked} is not writable"):
        outputs.check_writable_folder(f"{locked}/out", "--output_dir")
    assert sorted(os.listdir(tmp_path)) in ([], ["locked"])


def test_new_file_checks(tmp_path):
    (tmp_path / "taken.npz").write_bytes(b"")
    (tmp_path / "folder.npz").mkdir()
    for name, message in (("taken.npz", "already exists"), ("folder.npz", "is a folder"),
                          ("taken.npz/x.npz", "lies below the file")):
        with pytest.raises(OutputError, match=message):
            files.check_output_file(tmp_path / name, "the statistics file")
    files.check_output_file(tmp_path / "new" / "stats.npz", "the statistics file")


def test_whole_folders_are_accepted(tmp_path):
    outputs.check_sample_folder(tmp_path)  # no manifest: the user's own images
    folder = sample_folder(tmp_path / "run", 3)
    outputs.check_sample_folder(folder, image_names=["0.png", "1.png", "2.png"], rows=3)
    outputs.check_sample_folder(folder, image_names=[], rows=3)  # samples.npz kept, the PNGs deleted


@pytest.mark.parametrize("complete, names, rows, message", [
    (False, ["0.png", "1.png", "2.png"], None, "unfinished sampling run"),
    (True, ["0.png", "1.png", "2.png", "3.png"], None, "1 image files not from the run, 0 missing, e.g. 3.png"),
    (True, ["0.png", "2.png", "mine.jpg"], None, "1 image files not from the run, 1 missing"),
    (True, None, 5, "samples.npz has 5 samples, its manifest.json says 3"),
    (True, ["mine.jpg"], 3, "1 image files not from the run, 0 missing, e.g. mine.jpg"),
])
def test_folders_that_are_not_whole(tmp_path, complete, names, rows, message):
    folder = sample_folder(tmp_path, 3, complete=complete)
    with pytest.raises(OutputError, match=message):
        outputs.check_sample_folder(folder, image_names=names, rows=rows)


@pytest.mark.parametrize("text", ["{not json", '{"count": 3}', '{"count": -1, "complete": true}', "[]"])
def test_damaged_manifest(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(OutputError, match="manifest"):
        outputs.check_sample_folder(tmp_path)


def test_checkpoint_record(tmp_path):
    assert outputs.checkpoint_record(None) is None
    (tmp_path / "G.pth").write_bytes(b"abc")
    record = outputs.checkpoint_record(tmp_path / "G.pth")
    assert (record["path"], record["bytes"], record["epoch"]) == (str(tmp_path / "G.pth"), 3, None)


def test_one_sampling_run_at_a_time_and_no_lock_left(tmp_path):
    """The lock of a sample folder stops a second writer, goes with the run, and a stale lock file (a
    killed run) neither blocks the next run nor counts as a file of the user's."""
    folder = tmp_path / "samples"
    with outputs.sample_folder_lock(folder), pytest.raises(OutputError, match=r"in use by another sampling run \(pid"):
        outputs.sample_folder_lock(folder)
    assert os.listdir(folder) == []
    (folder / outputs.LOCK_NAME).write_text("pid 1 on elsewhere\n")  # left by a killed run
    outputs.check_sample_folder_output(str(folder), {})
    outputs.sample_folder_lock(folder).release()
    assert os.listdir(folder) == []


def test_a_lock_deleted_by_its_holder_is_not_taken(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder deleted it (at the end of its run) must
    lock the new file at the path, not the deleted one, or two runs would hold 'the' lock at once."""
    from utils import locks

    path = str(tmp_path / "job.lock")
    first = locks.FolderLock(path, str, remove=True).acquire()
    stale = open(path, "a+")  # opened by a late job before the holder deleted it  # noqa: SIM115
    first.release()
    second = locks.FolderLock(path, str).acquire()  # the next job, on the new file
    opened = [stale]

    def late_open(name, mode="r"):  # the late job's first open finds the deleted file, later ones the path
        return opened.pop() if opened else open(name, mode)

    monkeypatch.setattr(locks, "open", late_open, raising=False)
    with pytest.raises(ValueError, match="busy: pid"):
        locks.FolderLock(path, lambda holder: f"busy: {holder}").acquire()
    assert not opened and stale.closed
    second.release()
