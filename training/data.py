"""The training data of one process: its share of each epoch, images drawn under their own seeds, and
the loader that reads them (started anew each epoch, its workers deaf to stop signals)."""

import os
import sys
import warnings

import torch
from torch.utils.data import Dataset, DistributedSampler

from utils import signals
from utils.distributed import print0
from utils.rng import derived_seed


class EpochSampler(DistributedSampler):
    """DistributedSampler that can begin an epoch part-way through (resuming an interrupted one)."""

    def __init__(self, dataset, num_replicas, rank, seed):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def set_epoch(self, epoch, start=0):
        """Shuffle for ``epoch`` and skip its first ``start`` samples of this rank."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self):
        return self.num_samples - self.start


class SeededItems(Dataset):
    """``dataset`` whose item ``i`` of epoch ``e`` is drawn under its own seed (run seed, e, i): its
    random augmentation (the flips, torch's RNG) is the same whichever process or loader worker
    reads it, so a run resumed mid-epoch with any --num_workers sees the batches it would have."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, self.epoch, index))
            return self.dataset[index]


def make_loader(args, ctx, dataset):
    """Batches of this rank's share (``set_epoch`` on both before each epoch).  Workers are started
    anew each epoch, ignore stop signals (utils.signals), and draw nothing from the global RNG."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if args.num_workers > cores:
        print0(ctx, f"note: --num_workers {args.num_workers} loader processes on {cores} CPU cores; fewer may "
                    "load faster", file=sys.stderr)
    # torch says so again at every epoch's start, when its workers are started anew
    warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
    sampler = EpochSampler(dataset, ctx.world_size, ctx.rank, args.seed)
    items = SeededItems(dataset, args.seed)
    loader = signals.DataLoader(items, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
                                pin_memory=ctx.device.type == "cuda", drop_last=True,
                                generator=torch.Generator().manual_seed(args.seed))
    return loader, sampler, items
