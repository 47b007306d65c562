"""The DDGAN training loop: run folder, data, models, the iteration, saving and resuming.

``check_run(args)`` validates everything that can be checked before processes start;
``train(ctx, args)`` is what every process runs (see utils.distributed.launch).

Run folder ``{save_dir}/dd_gan/{dataset}/{exp}/`` (the reference's layout):
``args.json`` (the resolved flags), ``sample_discrete_epoch_{e}.png`` every epoch,
``xpos_epoch_{e}.png`` every 10 epochs, ``netG_{e}.pth`` every ``save_ckpt_every``
epochs and after the last (EMA weights with --use_ema), ``content.pth`` likewise every
``save_content_every`` epochs with --save_content, and TensorBoard scalars under ``tb/``.  Files are written
atomically.  SIGINT/SIGTERM: every process finishes the current iteration, content.pth
is saved, and the run exits with 128 + the signal number (130, 143); --resume continues
from the next iteration.
"""

import glob
import json
import os
import signal
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import datasets_prep
from score_sde.models.discriminator import Discriminator_large, Discriminator_small
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from utils import checkpoint, diffusion, performance
from utils.distributed import all_reduce, barrier, check_devices, gather_objects, planned_world_size, print0
from utils.ema import EMA
from utils.flags import model_config, namespace
from utils.loss import DDGANLoss
from utils.rng import derived_seed, rng_state, seed_everything, set_rng_state

CONTENT = "content.pth"
SMALL_D_MAX_SIZE = 64  # Discriminator_small up to 64 px, Discriminator_large above
XPOS_EVERY = 10  # epochs between xpos_epoch_{e}.png, as in the reference
LR_MIN = 1e-5


class TrainingError(Exception):
    """Stops every process; rank 0 prints ``message`` and all exit with ``code``."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def run_dir(args):
    return os.path.join(args.save_dir, "dd_gan", args.dataset, args.exp)


def check_data_shape(args, dataset):
    """The data set's images fit the model flags and give each process at least one batch."""
    image = dataset[0][0]
    expected = (args.num_channels, args.image_size, args.image_size)
    if tuple(image.shape) != expected:
        raise ValueError(f"--dataset {args.dataset} gives images of shape {tuple(image.shape)} but the "
                         f"model expects {expected}: fix --num_channels/--image_size")
    per_process = len(dataset) // planned_world_size(args)
    if per_process < args.batch_size:
        raise ValueError(f"the data set has {len(dataset)} images, {per_process} per process: fewer than "
                         f"one --batch_size {args.batch_size}; lower --batch_size or add data")


def check_run_folder(args):
    """--resume needs a readable content.pth of the same model; a fresh run must not overwrite one."""
    folder = run_dir(args)
    content_path = os.path.join(folder, CONTENT)
    if args.resume:
        content = checkpoint.load_content(content_path, mmap=True)
        stored, ours = content["model_config"], model_config(args)
        diff = [f"--{key} {stored[key]} (given {ours[key]})" for key in ours if stored.get(key) != ours[key]]
        if diff:
            raise ValueError(f"{content_path} was trained with {'; '.join(diff)}: use the run's model flags")
        if args.use_ema and content["ema"] is None:
            raise ValueError(f"{content_path} was trained without --use_ema: resume without it")
    elif os.path.exists(content_path) or glob.glob(os.path.join(folder, "netG_*.pth")):
        raise ValueError(f"{folder} already holds a run: pass --resume to continue it, "
                         "or choose another --exp or --save_dir")


def check_run(args):
    """Everything checkable before processes start; ValueError (incl. DataError) with the fix."""
    check_devices(args)
    if not args.dry_run:
        check_run_folder(args)
    datasets_prep.check_data(args)
    check_data_shape(args, datasets_prep.get_dataset(args, train=True))


def build_models(args, device):
    """(G, D): NCSNpp and the discriminator for the image size (small up to 64 px, large above)."""
    netG = NCSNpp(namespace(model_config(args))).to(device)
    disc = Discriminator_small if args.image_size <= SMALL_D_MAX_SIZE else Discriminator_large
    netD = disc(nc=2 * args.num_channels, ngf=args.ngf, t_emb_dim=args.t_emb_dim, act=nn.LeakyReLU(0.2))
    return netG, netD.to(device)


def build_optimizers(args, netG, netD):
    """Adam for each network and their cosine schedules (stepped once per epoch)."""
    optG = torch.optim.Adam(netG.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2))
    optD = torch.optim.Adam(netD.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2))
    schedG = torch.optim.lr_scheduler.CosineAnnealingLR(optG, args.num_epoch, eta_min=LR_MIN)
    schedD = torch.optim.lr_scheduler.CosineAnnealingLR(optD, args.num_epoch, eta_min=LR_MIN)
    return optG, optD, schedG, schedD


def wrap_ddp(model, ctx):
    """DDP (weights broadcast from rank 0 here; the buffers are constants, never re-synced);
    the model itself for one process."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.device] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


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


def make_loader(args, ctx, dataset):
    """Batches of this rank's share; the loader's own generator (seeded per epoch in ``fit``) seeds
    its workers, so the global RNG, which a resumed run restores, only sees the training draws."""
    sampler = EpochSampler(dataset, ctx.world_size, ctx.rank, args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
                        pin_memory=ctx.device.type == "cuda", drop_last=True, generator=torch.Generator())
    return loader, sampler


def set_requires_grad(model, flag):
    for param in model.parameters():
        param.requires_grad = flag


def remove_stale_temporaries(folder):
    """Delete the temporary files a killed run left behind (never a finished file)."""
    for path in glob.glob(os.path.join(folder, "*.tmp")):
        os.remove(path)


class StopRequest:
    """Within ``with``: remember a SIGINT/SIGTERM so that the loop can stop after the current
    iteration; the previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        self.previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.signum = signum

    @property
    def requested(self):
        return self.signum is not None


class Trainer:
    """Models, optimisers, data and counters of one process; ``fit`` runs the epochs."""

    def __init__(self, ctx, args, dataset):
        self.ctx, self.args = ctx, args
        self.folder = run_dir(args)
        self.config = model_config(args)
        netG, netD = build_models(args, ctx.device)
        for net in (netG, netD):
            performance.prepare_model(net, args.channels_last)
        self.optG, self.optD, self.schedG, self.schedD = build_optimizers(args, netG, netD)
        self.netG = performance.maybe_compile(wrap_ddp(netG, ctx), args.compile)
        self.netD = performance.maybe_compile(wrap_ddp(netD, ctx), args.compile)
        self.scaler = performance.grad_scaler(args.amp, ctx.device)
        self.ema = EMA(netG, args.ema_decay) if args.use_ema else None
        self.coeff = diffusion.Diffusion_Coefficients(args, ctx.device)
        self.pos_coeff = diffusion.Posterior_Coefficients(args, ctx.device)
        self.loss = DDGANLoss(self.netG, self.netD, self.coeff, self.pos_coeff, args.num_timesteps, args.nz,
                              args.r1_gamma, args.lazy_reg, amp=args.amp, scaler=self.scaler)
        self.loader, self.sampler = make_loader(args, ctx, dataset)
        self.epoch, self.iteration, self.global_step = 0, 0, 0
        self.stop = StopRequest()
        self.writer = None
        self.last = {}

    @property
    def generator(self):
        return checkpoint.unwrap(self.netG)

    def train_step(self, real):
        """One iteration: D step (real + R1, fake), then G step and EMA.  Returns the loss tensors."""
        set_requires_grad(self.netD, True)
        self.netD.zero_grad()
        err_real, penalty, t, x_tp1 = self.loss.accumulate_d_real(real, self.global_step)
        err_fake = self.loss.accumulate_d_fake(x_tp1, t)
        self.scaler.step(self.optD)
        set_requires_grad(self.netD, False)
        self.netG.zero_grad()
        err_g, self.last["x_pos"] = self.loss.accumulate_g(real)
        self.scaler.step(self.optG)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.generator)
        self.global_step += 1
        return err_real + err_fake, err_g, penalty

    def reduced_stats(self, err_d, err_g, penalty):
        """[errD, errG, R1, R1 count, stop] summed over processes (one host sync per iteration)."""
        r1 = torch.zeros((), device=err_d.device) if penalty is None else penalty
        stats = torch.stack([err_d, err_g, r1, torch.tensor(float(penalty is not None), device=err_d.device),
                             torch.tensor(float(self.stop.requested), device=err_d.device)])
        return all_reduce(stats, self.ctx).tolist()

    def check_finite(self, epoch, iteration, err_d, err_g, r1):
        if all(np.isfinite([err_d, err_g, r1])):
            return
        raise TrainingError(
            f"non-finite loss at epoch {epoch}, iteration {iteration} (global step {self.global_step - 1}): "
            f"errD={err_d}, errG={err_g}, R1={r1}; nothing was saved for this epoch. Lower --lr_d/--lr_g, "
            "raise --r1_gamma or lower --lazy_reg, then --resume from the last content.pth")

    def train_epoch(self, epoch):
        """Iterate over this epoch's batches; returns True if a stop was requested."""
        args, ctx = self.args, self.ctx
        total = len(self.loader) + self.iteration
        if args.max_iters_per_epoch is not None:
            total = min(total, args.max_iters_per_epoch)
        bar = tqdm(total=total, initial=min(self.iteration, total), desc=f"epoch {epoch}",
                   disable=not ctx.is_main, dynamic_ncols=True, leave=False)
        tick, window, stop = time.perf_counter(), 0, False
        batches = iter(self.loader)
        while self.iteration < total:
            real = next(batches)[0].to(ctx.device, non_blocking=True)
            real = performance.prepare_input(real, args.channels_last)
            err_d, err_g, r1, r1_count, stop = self.reduced_stats(*self.train_step(real))
            err_d, err_g = err_d / ctx.world_size, err_g / ctx.world_size
            self.check_finite(epoch, self.iteration, err_d, err_g, r1)
            if r1_count:
                self.last["r1"] = r1 / r1_count
            self.iteration += 1
            window += 1
            bar.update(1)
            if window == args.log_every or self.iteration == total:
                images_per_s = window * args.batch_size * ctx.world_size / (time.perf_counter() - tick)
                self.log(bar, err_d, err_g, images_per_s)
                tick, window = time.perf_counter(), 0
            if stop:
                break
        bar.close()
        return bool(stop)

    def log(self, bar, err_d, err_g, images_per_s):
        """Progress bar postfix and TensorBoard scalars (rank 0)."""
        r1 = self.last.get("r1", float("nan"))
        bar.set_postfix(errD=f"{err_d:.4f}", errG=f"{err_g:.4f}", R1=f"{r1:.4f}", refresh=False)
        if self.writer is None:
            return
        scalars = {"loss/errD": err_d, "loss/errG": err_g, "loss/R1": r1,
                   "lr/G": self.optG.param_groups[0]["lr"], "lr/D": self.optD.param_groups[0]["lr"],
                   "speed/images_per_s": images_per_s}
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, self.global_step)

    def content(self):
        """Everything --resume needs; collective (gathers every process's RNG state)."""
        rng = gather_objects(rng_state(self.ctx.device), self.ctx)
        return {"epoch": self.epoch, "iteration": self.iteration, "global_step": self.global_step,
                "args": vars(self.args), "model_config": self.config, "world_size": self.ctx.world_size,
                "netG_dict": self.generator.state_dict(),
                "netD_dict": checkpoint.unwrap(self.netD).state_dict(),
                "optimizerG": self.optG.state_dict(), "optimizerD": self.optD.state_dict(),
                "schedulerG": self.schedG.state_dict(), "schedulerD": self.schedD.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(), "rng": rng,
                "scaler": self.scaler.state_dict()}

    def save_content(self):
        content = self.content()
        if self.ctx.is_main:
            checkpoint.save_content(os.path.join(self.folder, CONTENT), content)

    def resume(self):
        """Load content.pth: weights, optimisers, schedulers, EMA, counters and this rank's RNG."""
        content = checkpoint.load_content(os.path.join(self.folder, CONTENT))
        self.generator.load_state_dict(content["netG_dict"])
        checkpoint.unwrap(self.netD).load_state_dict(content["netD_dict"])
        self.optG.load_state_dict(content["optimizerG"])
        self.optD.load_state_dict(content["optimizerD"])
        self.schedG.load_state_dict(content["schedulerG"])
        self.schedD.load_state_dict(content["schedulerD"])
        if self.ema is not None:
            self.ema.load_state_dict(content["ema"])
        if content.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(content["scaler"])
        self.epoch, self.iteration = content["epoch"], content["iteration"]
        self.global_step = content["global_step"]
        self.restore_rng(content)
        print0(self.ctx, f"resumed {self.folder} at epoch {self.epoch}, iteration {self.iteration}, "
                         f"global step {self.global_step}")

    def restore_rng(self, content):
        """This rank's RNG state; with another world size, reseed and restart the interrupted epoch."""
        then = (content["world_size"], content["args"]["batch_size"])
        now = (self.ctx.world_size, self.args.batch_size)
        if then == now:
            set_rng_state(content["rng"][self.ctx.rank], self.ctx.device)
            return
        print0(self.ctx, f"warning: resuming with {now[0]} processes x batch {now[1]} instead of "
                         f"{then[0]} x {then[1]}: "
                         "the run goes on, but not as it would have without the interruption")
        seed_everything(self.args.seed + self.ctx.rank + self.epoch)
        self.iteration = 0

    def save_samples(self, epoch):
        """sample_discrete_epoch_{e}.png from fixed noise (G in eval mode, the training RNG untouched);
        xpos_epoch_{e}.png, the last G step's x_t', every 10 epochs."""
        if epoch % XPOS_EVERY == 0 and "x_pos" in self.last:
            self.save_image(self.last["x_pos"], f"xpos_epoch_{epoch}.png")
        args, device = self.args, self.ctx.device
        self.generator.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(args.seed)
            x_init = torch.randn(args.batch_size, args.num_channels, args.image_size, args.image_size,
                                 device=device)
            fake = diffusion.sample_from_model(self.pos_coeff, self.generator, args.num_timesteps, x_init,
                                               diffusion.get_time_schedule(args, device), args)
        self.generator.train()
        self.save_image(fake, f"sample_discrete_epoch_{epoch}.png")

    def save_image(self, images, name):
        checkpoint.atomic_write(os.path.join(self.folder, name),
                                lambda f: torchvision.utils.save_image(images, f, normalize=True, format="png"))

    def save_generator(self, epoch):
        """netG_{epoch}.pth: the EMA weights with --use_ema, in the reference's key layout + config."""
        path = os.path.join(self.folder, f"netG_{epoch}.pth")
        if self.ema is None:
            checkpoint.save_generator(path, self.generator, self.config, epoch=epoch)
            return
        with self.ema.swapped(self.generator):
            checkpoint.save_generator(path, self.generator, self.config, epoch=epoch)

    def end_epoch(self, epoch):
        """Learning-rate decay, then (rank 0) samples, content.pth and netG_{epoch}.pth.

        As the reference, on the epochs divisible by ``save_content_every`` / ``save_ckpt_every``;
        also after the last epoch, so that the end of a run is never lost.
        """
        args = self.args
        if not args.no_lr_decay:
            with warnings.catch_warnings():  # an epoch can have no iterations (resumed at its end)
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                self.schedG.step()
                self.schedD.step()
        self.epoch, self.iteration = epoch + 1, 0
        if self.ctx.is_main:
            self.save_samples(epoch)
        stopping, last = args.stop_after_epoch == epoch, epoch == args.num_epoch
        if (args.save_content and (epoch % args.save_content_every == 0 or last)) or stopping:
            self.save_content()
        if self.ctx.is_main and (epoch % args.save_ckpt_every == 0 or last):
            self.save_generator(epoch)
        return stopping

    def interrupted(self):
        """Save content.pth after a signal and stop every process with 128 + signal number."""
        self.save_content()
        barrier(self.ctx)
        signum = self.stop.signum or signal.SIGTERM
        raise TrainingError(f"stopped by {signal.Signals(signum).name} at epoch {self.epoch}, iteration "
                            f"{self.iteration}: saved {os.path.join(self.folder, CONTENT)}; continue with "
                            "--resume", code=128 + signum)

    def fit(self):
        """Epochs self.epoch .. num_epoch, as in the reference (the last index included)."""
        for epoch in range(self.epoch, self.args.num_epoch + 1):
            self.sampler.set_epoch(epoch, start=self.iteration * self.args.batch_size)
            self.loader.generator.manual_seed(derived_seed(self.args.seed, self.ctx.rank, epoch))
            if self.train_epoch(epoch):
                self.interrupted()
            if self.end_epoch(epoch):
                print0(self.ctx, f"stopped after epoch {epoch} (--stop_after_epoch): continue with --resume")
                break
        barrier(self.ctx)

    def dry_run(self):
        """One timed iteration on the first batch; nothing is written."""
        real = next(iter(self.loader))[0].to(self.ctx.device)
        start = time.perf_counter()
        err_d, err_g, _ = self.train_step(real)
        err_d, err_g = err_d.item(), err_g.item()
        seconds = time.perf_counter() - start
        print0(self.ctx, f"dry run: one iteration at batch {self.args.batch_size} x {self.ctx.world_size} "
                         f"process(es) on {self.ctx.device} took {seconds:.2f} s "
                         f"(errD {err_d:.4f}, errG {err_g:.4f})")


def open_run_folder(trainer):
    """Rank 0: the folder, args.json, a TensorBoard writer; stale temporaries removed."""
    args = trainer.args
    os.makedirs(trainer.folder, exist_ok=True)
    remove_stale_temporaries(trainer.folder)
    text = json.dumps(vars(args), indent=2, sort_keys=True) + "\n"
    checkpoint.atomic_write(os.path.join(trainer.folder, "args.json"), lambda f: f.write(text.encode()))
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        trainer.writer = SummaryWriter(os.path.join(trainer.folder, "tb"))


def train(ctx, args):
    """Entry of every process: seed, build, resume, fit; a TrainingError exits with its code."""
    seed_everything(args.seed + ctx.rank)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trainer = Trainer(ctx, args, datasets_prep.get_dataset(args, train=True))
    try:
        if args.dry_run:
            return trainer.dry_run()
        with trainer.stop:
            if ctx.is_main:
                open_run_folder(trainer)
            if args.resume:
                trainer.resume()
            trainer.fit()
    except TrainingError as err:
        print0(ctx, f"error: {err}" if err.code == 1 else str(err), file=sys.stderr)
        raise SystemExit(err.code) from None
    finally:
        if trainer.writer is not None:
            trainer.writer.close()
