"""Every check that can be made before the training's processes start (train_ddgan.py runs it).

``prepare_run(args, explicit)`` takes the run's own flags into ``args`` on --resume, checks the
model, devices, port, metrics, data and run folder, and locks the folder: a problem is a
ValueError (or DataError) whose one line says what to do, before anything is written.
"""

import os

import datasets_prep
from metrics import METRICS
from metrics.registry import Options, check_count
from score_sde.models.discriminator import check_image_size
from training import content, run_folder
from training.evaluation import check_run_files
from utils import distributed, files


def check_data_shape(args, dataset):
    """The data set's images fit the model flags and give each process at least one batch."""
    image = dataset[0][0]
    expected = (args.num_channels, args.image_size, args.image_size)
    if tuple(image.shape) != expected:
        raise ValueError(f"--dataset {args.dataset} gives images of shape {tuple(image.shape)} but the "
                         f"model expects {expected}: fix --num_channels/--image_size")
    per_process = len(dataset) // distributed.planned_world_size(args)
    if per_process < args.batch_size:
        raise ValueError(f"the data set has {len(dataset)} images, {per_process} per process: fewer than "
                         f"one --batch_size {args.batch_size}; lower --batch_size or add data")


def check_metrics(args):
    """Enough samples for each metric, the run's metric records, and the real side's path (the rest is
    prepared on rank 0 before the first iteration)."""
    if not args.metrics:
        return
    check_count([METRICS[name] for name in args.metrics], args.metrics_samples, Options(), "--metrics_samples")
    check_run_files(run_folder.run_dir(args), args.resume and not args.dry_run)
    if args.real_img_dir is not None and not os.path.exists(args.real_img_dir):
        raise ValueError(f"--real_img_dir {args.real_img_dir} does not exist: pass a folder of images, a "
                         "samples .npz or a statistics .npz")


def take_resumed_flags(args, explicit, folder):
    """--resume: the run's own flags into ``args``, after checking that there is something to resume."""
    run_folder.check_resumable(folder)
    saved = content.load(os.path.join(folder, run_folder.CONTENT), mmap=True)
    run_folder.resume_flags(args, set(explicit), saved)
    run_folder.check_left_to_do(folder, args, saved)


def prepare_run(args, explicit=()):
    """Every check possible before processes start; ValueError (incl. DataError) with the fix.

    With --resume the run's own flags are taken into ``args`` first.  Returns the RunLock of
    the run folder (held by this process until it ends), or None for a dry run or a process
    that is not the run's first.
    """
    folder = run_folder.run_dir(args)
    if args.resume and not args.dry_run:
        take_resumed_flags(args, explicit, folder)
    check_image_size(args.image_size)
    distributed.check_devices(args)
    distributed.check_port(args)
    check_metrics(args)
    datasets_prep.check_data(args)
    check_data_shape(args, datasets_prep.get_dataset(args, train=True))
    if args.dry_run:
        return None
    files.check_writable_folder(folder, "--save_dir")
    run_folder.check_not_inside_data(folder, args)
    if args.node_rank != 0 or int(os.environ.get("RANK", 0)) != 0:
        return None
    return run_folder.RunLock(folder).acquire(check=None if args.resume else lambda: run_folder.check_fresh(folder))
