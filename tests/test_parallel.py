"""The suite runs in parallel (``pytest -n auto``, pytest-xdist): what tests share is safe to share.

Ports come from the kernel (``--master_port 0``, ``utils.distributed.free_port``), files go under
``tmp_path``.  The one cache, the stacked-digits classifier (``$XDG_CACHE_HOME/ddgan``), may be
trained by several workers at once on first use: each writes a temporary file of its own and
renames it into place, so a reader finds no file or a whole one.
"""

import threading

from metrics import classifiers

WRITERS = 3


def test_concurrent_first_use_of_the_classifier_cache(tmp_path, monkeypatch):
    """Three processes' worth of first use at once (threads here): every one gets a classifier, a
    reader polling meanwhile never meets a partial file, and no temporary file stays behind."""
    path = tmp_path / "cache" / "ddgan" / "digits.pt"
    all_training = threading.Barrier(WRITERS)

    def train():  # every writer has found no file before any saves
        all_training.wait(timeout=60)
        return classifiers.digit_cnn(classifiers.DIGITS_SIDE), 0.5

    monkeypatch.setattr(classifiers, "train_digits_classifier", train)
    done, read, errors = threading.Event(), [], []

    def poll():
        while not done.is_set():
            if path.is_file():
                try:
                    read.append(classifiers.load_classifier(str(path), classifiers.DIGITS_SIDE)[1])
                except Exception as error:  # a partial file: what this test is about
                    errors.append(error)

    got = []
    writers = [threading.Thread(target=lambda: got.append(classifiers.digits_classifier(str(path), verbose=False)[1]))
               for _ in range(WRITERS)]
    reader = threading.Thread(target=poll)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    done.set()
    reader.join()
    assert not errors, errors
    assert got == [0.5] * WRITERS  # a writer that failed added nothing
    assert classifiers.load_classifier(str(path), classifiers.DIGITS_SIDE)[1] == 0.5
    assert [file.name for file in path.parent.iterdir()] == [path.name]
