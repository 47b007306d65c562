"""Run a command line and signal its whole process group at one chosen moment (tests/test_signals.py).

    python tests/_signal_hook.py MOMENT SIGNAL SCRIPT ARGV...

SCRIPT is train_ddgan.py or test_ddgan.py; the process must lead its own group (the tests start it
with start_new_session), so the signal also reaches its data-loader workers, as a scheduler's does.
Processes that the run spawns (--num_process_per_node) import this file again as ``__mp_main__`` with
the same arguments, so each installs the same hook; torchrun starts this file in every rank.
MOMENT, for train_ddgan.py:
  iteration   as global step 5 begins (epoch 1 of the tests' runs of 4 iterations per epoch)
  evaluation  as epoch 1's evaluation samples (--metrics)
  write       half-way through writing epoch 1's content.pth (the second one written)
and for test_ddgan.py:
  sampling    as the second batch of samples is drawn
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def send(signum):
    os.killpg(os.getpgid(0), signum)


def at_iteration(signum):
    from training import trainer

    step = trainer.Trainer.train_step

    def train_step(self, real):
        if self.global_step == 5:
            send(signum)
        return step(self, real)

    trainer.Trainer.train_step = train_step


def at_evaluation(signum):
    from training import evaluation

    evaluate, sample_array = evaluation.TrainingMetrics.evaluate, evaluation.sampling.sample_array
    epochs = []

    def evaluating(self, generator, config, epoch, *args, **kwargs):
        epochs.append(epoch)
        return evaluate(self, generator, config, epoch, *args, **kwargs)

    def sampling(*args, **kwargs):
        if epochs[-1] == 1:
            send(signum)
        return sample_array(*args, **kwargs)

    evaluation.TrainingMetrics.evaluate = evaluating
    evaluation.sampling.sample_array = sampling


def at_write(signum):
    from utils import files

    atomic_write, contents = files.atomic_write, []

    def writing(path, write):
        if os.path.basename(path) == "content.pth":
            contents.append(path)
            if len(contents) == 2:
                def write_signalled(handle, write=write):
                    handle.write(b"")
                    send(signum)
                    write(handle)

                return atomic_write(path, write_signalled)
        return atomic_write(path, write)

    files.atomic_write = writing


def at_sampling(signum):
    from utils import sampling

    batches = sampling.batch_sizes

    def sizes(total, batch_size):
        for index, size in enumerate(batches(total, batch_size)):
            if index == 1:
                send(signum)
            yield size

    sampling.batch_sizes = sizes


def install():
    """The hook that the command line names; returns the script and its arguments."""
    moment, name, script, *argv = sys.argv[1:]
    hooks = {"iteration": at_iteration, "evaluation": at_evaluation, "write": at_write, "sampling": at_sampling}
    hooks[moment](getattr(signal, name))
    return script, argv


if __name__ == "__main__":
    script, argv = install()
    __import__(Path(script).stem).main(argv)
elif __name__ == "__mp_main__":  # a process spawned by the run: the same hook, then the spawned work
    install()
