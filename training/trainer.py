"""The DDGAN training loop: models, optimisers, the iteration, the epoch and the files it leaves.

``train(ctx, args)`` is what every process runs (see utils.distributed.launch), after
training.preflight has checked everything it could before the processes started.  The run
folder and what --resume takes from it are training.run_folder's; what content.pth holds is
training.content's; metrics while training are training.evaluation's.

Run folder ``{save_dir}/dd_gan/{dataset}/{exp}/`` (the reference's layout): ``args.json``,
``sample_discrete_epoch_{e}.png`` every epoch (the sampler of test_ddgan.py, seeded with
--seed, on the weights of netG_{e}.pth), ``xpos_epoch_{e}.png`` every 10 epochs,
``netG_{e}.pth`` every ``save_ckpt_every`` epochs and after the last (EMA weights with
--use_ema), ``content.pth`` every ``save_content_every`` epochs with --save_content,
``metrics.jsonl`` and ``netG_best.pth`` with --metrics, TensorBoard scalars under ``tb/``.
Files are written atomically.  SIGINT/SIGTERM/SIGHUP (also when sent to the whole process
group, data-loader workers included: see utils.signals): every process finishes the current
iteration (an evaluation in progress is abandoned), content.pth is saved, and the run exits
with 128 + the signal number (130, 143, 129).
"""

import contextlib
import errno
import os
import sys
import time
import warnings

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import datasets_prep
from metrics import MetricError
from score_sde.checkpoint import CONTENT_EMA, CONTENT_GENERATOR, save_generator, unwrap
from score_sde.models import build_discriminator, build_generator
from training import content, run_folder
from training.data import make_loader
from training.evaluation import TrainingMetrics
from training.loss import DDGANLoss
from utils import diffusion, distributed, files, performance, rng, signals
from utils.distributed import all_reduce, barrier, print0
from utils.ema import EMA
from utils.flags import model_config
from utils.rng import seed_everything
from utils.sampling import Sampler, write_grid

CONTENT = run_folder.CONTENT
LR_MIN = 1e-5
XPOS_EVERY = 10  # epochs between grids of the last fake x_t batch, as in the reference


class TrainingError(Exception):
    """Stops every process; rank 0 prints ``message`` and all exit with ``code``."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- building

def build_models(config, device):
    """(G, D) of ``config`` on ``device``; built in this order right after seeding, they are the
    reference's initial weights."""
    netG = build_generator(config).to(device)
    return netG, build_discriminator(config).to(device)


def build_optimizers(args, netG, netD):
    """Adam for each network and their cosine schedules (stepped once per epoch)."""
    optG = torch.optim.Adam(netG.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2))
    optD = torch.optim.Adam(netD.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2))
    schedG = torch.optim.lr_scheduler.CosineAnnealingLR(optG, args.num_epoch, eta_min=LR_MIN)
    schedD = torch.optim.lr_scheduler.CosineAnnealingLR(optD, args.num_epoch, eta_min=LR_MIN)
    return optG, optD, schedG, schedD


def retarget_schedules(schedulers, num_epoch):
    """After --resume with another --num_epoch: the cosine continues from the rate reached and ends at
    1e-5 after ``num_epoch`` (torch's recursive cosine step with the new length: the rate never rises)."""
    for scheduler in schedulers:
        scheduler.T_max = num_epoch


def wrap_ddp(model, ctx):
    """DDP (weights broadcast from rank 0 here; the buffers are constants, never re-synced);
    the model itself for one process."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.device] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


@contextlib.contextmanager
def _evaluating(model):
    """Within: ``model`` in eval mode; its mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def disk_errors(what):
    """Turn a failed write into one line: a full disk says so, and that the last files are intact."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err.errno, f"disk full while writing {what}; every file written before is intact "
                                     "(writes are atomic): free space, then --resume") from None
        raise OSError(err.errno, f"cannot write {what} ({err.strerror}): check the folder, then --resume") from None


def set_requires_grad(model, flag):
    for param in model.parameters():
        param.requires_grad = flag


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """Models, optimisers, data and counters of one process; ``fit`` runs the epochs."""

    def __init__(self, ctx, args, dataset, stop=None):
        self.ctx, self.args = ctx, args
        self.folder = run_folder.run_dir(args)
        self.config = model_config(args)
        netG, netD = build_models(self.config, ctx.device)
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
        self.loader, self.sampler, self.items = make_loader(args, ctx, dataset)
        self.epoch, self.iteration, self.global_step = 0, 0, 0
        self.saved_at = None  # (epoch, iteration) of the last content.pth written
        self.abandoned = None  # the epoch whose evaluation a stop signal broke off
        self.stop = signals.StopRequest() if stop is None else stop  # entered by the caller
        self.writer = None
        self.evaluation = None  # rank 0's training.evaluation.TrainingMetrics with --metrics
        self.last = {}

    @property
    def generator(self):
        return unwrap(self.netG)

    @property
    def discriminator(self):
        return unwrap(self.netD)

    def parts(self):
        """The stateful parts content.pth holds (training.content.STATE_KEYS), None where the run has none."""
        return {CONTENT_GENERATOR: self.generator, "netD_dict": self.discriminator, "optimizerG": self.optG,
                "optimizerD": self.optD, "schedulerG": self.schedG, "schedulerD": self.schedD, CONTENT_EMA: self.ema,
                "scaler": self.scaler}

    def counters(self):
        return {"epoch": self.epoch, "iteration": self.iteration, "global_step": self.global_step}

    # -------------------------------------------------------------- one iteration

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
        # torch.full, not torch.tensor: a value copied from host memory would wait for the device
        r1 = torch.zeros((), device=err_d.device) if penalty is None else penalty
        stats = torch.stack([err_d, err_g, r1, torch.full((), float(penalty is not None), device=err_d.device),
                             torch.full((), float(self.stop.requested), device=err_d.device)])
        return all_reduce(stats, self.ctx).tolist()  # the iteration's one host sync

    def check_finite(self, epoch, iteration, err_d, err_g, r1):
        if all(np.isfinite([err_d, err_g, r1])):
            return
        raise TrainingError(
            f"non-finite loss at epoch {epoch}, iteration {iteration} (global step {self.global_step - 1}): "
            f"errD={err_d}, errG={err_g}, R1={r1}; nothing was saved for this epoch. Lower --lr_d/--lr_g, "
            "raise --r1_gamma or lower --lazy_reg, then --resume from the last content.pth")

    # -------------------------------------------------------------- one epoch

    def batches(self, total):
        """This epoch's batches on the device; a data set error (a corrupt image) becomes a TrainingError."""
        batches = iter(self.loader)
        while self.iteration < total:
            try:
                real = next(batches)[0]
            except datasets_prep.DataError as err:
                raise TrainingError(str(err).strip().splitlines()[-1]) from None
            real = real.to(self.ctx.device, non_blocking=True)
            yield performance.prepare_input(real, self.args.channels_last)

    def train_epoch(self, epoch):
        """Iterate over this epoch's batches; returns True if a stop was requested."""
        args, ctx = self.args, self.ctx
        total = len(self.loader) + self.iteration
        if args.max_iters_per_epoch is not None:
            total = min(total, args.max_iters_per_epoch)
        tick, window, stop = time.perf_counter(), 0, False
        with tqdm(total=total, initial=min(self.iteration, total), desc=f"epoch {epoch}", disable=not ctx.is_main,
                  dynamic_ncols=True, leave=False) as bar:  # closed (cleared) also when an error stops the run
            for real in self.batches(total):
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
        return bool(stop)

    def log(self, bar, err_d, err_g, images_per_s):
        """Progress bar postfix and TensorBoard scalars (rank 0)."""
        r1 = self.last.get("r1", float("nan"))
        bar.set_postfix(errD=f"{err_d:.4f}", errG=f"{err_g:.4f}", R1=f"{r1:.4f}", refresh=False)
        scalars = {"loss/errD": err_d, "loss/errG": err_g, "loss/R1": r1,
                   "lr/G": self.optG.param_groups[0]["lr"], "lr/D": self.optD.param_groups[0]["lr"],
                   "speed/images_per_s": images_per_s}
        self.add_scalars(scalars)

    def add_scalars(self, scalars):
        if self.writer is None:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, self.global_step)

    # -------------------------------------------------------------- saving

    def save_content(self):
        """content.pth (collective); written by rank 0."""
        with disk_errors(CONTENT):
            content.save_training(os.path.join(self.folder, CONTENT), self.parts(), self.counters(), self.ctx,
                                  self.args, self.config)
        self.saved_at = (self.epoch, self.iteration)

    def resume(self):
        """content.pth: weights, optimisers, schedulers, EMA, counters and this process's RNG."""
        saved, counters = content.resume_training(os.path.join(self.folder, CONTENT), self.parts(), self.ctx,
                                                  self.args)
        self.epoch, self.iteration, self.global_step = (counters[key] for key in content.COUNTERS)
        if saved["args"]["num_epoch"] != self.args.num_epoch:
            retarget_schedules((self.schedG, self.schedD), self.args.num_epoch)
        self.saved_at = (self.epoch, self.iteration)
        print0(self.ctx, f"resumed {self.folder} at epoch {self.epoch}, iteration {self.iteration}, "
                         f"global step {self.global_step}")

    def saved_generator(self):
        """The generator as netG_{epoch}.pth holds it: with --use_ema a context with the EMA weights."""
        if self.ema is None:
            return contextlib.nullcontext(self.generator)
        return self.ema.swapped(self.generator)

    def write_epoch_files(self, epoch, parts=None):
        """Rank 0: the epoch's grids, netG_{epoch}.pth and evaluation (``parts``: which of those; default:
        everything due, training.run_folder.epoch_files_due); the generator in eval mode, as saved."""
        parts = run_folder.epoch_files_due(self.args, epoch) if parts is None else parts
        if epoch % XPOS_EVERY == 0 and "x_pos" in self.last:
            with disk_errors("the x_pos grid"):
                write_grid(self.last["x_pos"], os.path.join(self.folder, f"xpos_epoch_{epoch}.png"))
        try:
            with self.saved_generator() as generator, _evaluating(generator):
                if "grid" in parts:
                    self.write_grid(generator, epoch)
                if "generator" in parts:
                    with disk_errors(run_folder.generator_name(epoch)):
                        save_generator(os.path.join(self.folder, run_folder.generator_name(epoch)), generator,
                                       self.config, epoch=epoch)
                if "metrics" in parts and self.evaluation is not None:
                    self.evaluate(generator, epoch)
        except signals.Abandoned:  # said by ``interrupted``, which follows
            self.abandoned = epoch

    def write_grid(self, generator, epoch):
        """test_ddgan.py's seeded grid of ``generator`` (--seed, --batch_size images), the training RNG untouched."""
        sampler = Sampler(generator, self.config, self.ctx.device)
        with rng.untouched(self.ctx.device), disk_errors("the sample grid"):
            torch.manual_seed(self.args.seed)
            write_grid(sampler(self.args.batch_size), os.path.join(self.folder, run_folder.grid_name(epoch)))

    def evaluate(self, generator, epoch):
        """The evaluation of ``epoch``: a metrics.jsonl line, TensorBoard scalars, a line on stdout."""
        name = run_folder.generator_name(epoch) if run_folder.generator_due(self.args, epoch) else None
        record = self.evaluation.evaluate(generator, self.config, epoch, self.global_step, name)
        numbers = {key: value for key, value in record.items() if key in self.evaluation.keys}
        self.add_scalars({f"metrics/{key}": value for key, value in numbers.items()})
        print0(self.ctx, f"epoch {epoch}: " + ", ".join(f"{key} {value:.4g}" for key, value in numbers.items()))

    def finish_stopped_epoch(self):
        """After --resume at the start of an epoch: the previous epoch's files that its run did not
        write (it was stopped or killed during them), from the same weights; then a signal check (one
        may have come while the run was being prepared)."""
        if self.iteration == 0 and self.epoch > 0 and self.ctx.is_main:
            missing = run_folder.missing_epoch_files(self.folder, self.args, self.epoch - 1)
            if missing:
                print0(self.ctx, f"epoch {self.epoch - 1}: writing what its run did not ({', '.join(missing)})")
                self.write_epoch_files(self.epoch - 1, missing)
        self.stop_if_signalled()

    def end_epoch(self, epoch):
        """Learning-rate decay, content.pth (when due), then the epoch's files: samples, netG_{epoch}.pth
        and metrics (rank 0).  content.pth comes first, so that a kill during the files (a long
        evaluation) loses no training: --resume writes what is missing (``finish_stopped_epoch``).

        As the reference, on the epochs divisible by ``save_content_every`` / ``save_ckpt_every``;
        also after the last epoch, so that the end of a run is never lost.
        """
        args = self.args
        if not args.no_lr_decay and epoch < args.num_epoch:  # not after the last: the cosine would rise again
            with warnings.catch_warnings():  # an epoch can have no iterations (resumed at its end)
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                self.schedG.step()
                self.schedD.step()
        self.epoch, self.iteration = epoch + 1, 0
        stopping = args.stop_after_epoch == epoch
        if (args.save_content and (epoch % args.save_content_every == 0 or epoch == args.num_epoch)) or stopping:
            self.save_content()
        if self.ctx.is_main:
            self.write_epoch_files(epoch)
        self.stop_if_signalled()  # a signal during the epoch's files (an evaluation drops out for it)
        return stopping

    def stop_if_signalled(self):
        """Stop every process if any has received a stop signal (collective)."""
        signum = torch.full((1,), float(self.stop.signum or 0), device=self.ctx.device)
        signum = int(all_reduce(signum, self.ctx, op="max").item())
        if signum:
            self.interrupted(signum)

    def interrupted(self, signum):
        """Save content.pth after a signal (unless it holds this state already) and stop every process
        with 128 + the signal number."""
        if self.saved_at != (self.epoch, self.iteration):
            self.save_content()
        barrier(self.ctx)
        abandoned = "" if self.abandoned is None else f" (the evaluation of epoch {self.abandoned} is done then)"
        raise TrainingError(f"stopped by {signals.signal_name(signum)} at epoch {self.epoch}, iteration "
                            f"{self.iteration}: saved {os.path.join(self.folder, CONTENT)}; continue with "
                            f"--resume{abandoned}", code=signals.exit_code(signum))

    def fit(self):
        """Epochs self.epoch .. num_epoch, as in the reference (the last index included)."""
        for epoch in range(self.epoch, self.args.num_epoch + 1):
            self.sampler.set_epoch(epoch, start=self.iteration * self.args.batch_size)
            self.items.epoch = epoch
            if self.train_epoch(epoch):
                self.stop_if_signalled()
            stopping = self.end_epoch(epoch)
            barrier(self.ctx)
            if stopping:
                print0(self.ctx, f"stopped after epoch {epoch} (--stop_after_epoch): continue with --resume")
                break

    def dry_run(self):
        """One timed iteration on the first batch; nothing is written."""
        real = next(self.batches(1))
        start = time.perf_counter()
        err_d, err_g, _ = self.train_step(real)
        err_d, err_g = err_d.item(), err_g.item()
        seconds = time.perf_counter() - start
        print0(self.ctx, f"dry run: one iteration at batch {self.args.batch_size} x {self.ctx.world_size} "
                         f"process(es) on {self.ctx.device} took {seconds:.2f} s "
                         f"(errD {err_d:.4f}, errG {err_g:.4f})")


# ----------------------------------------------------------------------------- per process

def open_run_folder(trainer):
    """Rank 0: the folder, args.json, a TensorBoard writer; stale temporaries removed."""
    args = trainer.args
    os.makedirs(trainer.folder, exist_ok=True)
    run_folder.remove_stale_temporaries(trainer.folder)
    run_folder.write_args(trainer.folder, args)
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        trainer.writer = SummaryWriter(os.path.join(trainer.folder, "tb"))


def prepare_metrics(trainer):
    """Rank 0 builds the evaluator (Inception, real side) before the first iteration; every process
    learns whether that worked, so that all stop together if it did not."""
    message = None
    if trainer.ctx.is_main and trainer.args.metrics:
        try:
            with rng.untouched(trainer.ctx.device):  # building networks draws; a resumed run must not
                trainer.evaluation = run_metrics(trainer)
        except (MetricError, OSError, ValueError) as err:
            message = str(err).strip().splitlines()[-1]
    failed = all_reduce(torch.full((1,), float(message is not None), device=trainer.ctx.device), trainer.ctx)
    if failed.item():
        raise TrainingError(message or "metrics could not be prepared on rank 0 (see its error)")


def run_metrics(trainer):
    args = trainer.args
    return TrainingMetrics(args, trainer.folder, trainer.ctx.device, trainer.epoch,
                           lambda: datasets_prep.get_dataset(args, train=False), trainer.stop.abandoning)


def train(ctx, args):
    """Entry of every process: seed, build, resume, fit; a TrainingError exits with its code.

    Stop signals are recorded from the start (utils.signals): one that comes while the models and
    the evaluator are being built stops the run at its first safe point, with content.pth saved."""
    seed_everything(args.seed + ctx.rank)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trainer = None
    try:
        with signals.StopRequest() as stop:
            trainer = Trainer(ctx, args, datasets_prep.get_dataset(args, train=True), stop)
            if args.dry_run:
                return trainer.dry_run()
            if ctx.is_main:
                open_run_folder(trainer)
            if args.resume:
                trainer.resume()
            prepare_metrics(trainer)
            trainer.finish_stopped_epoch()
            trainer.fit()
    except OSError as err:
        print0(ctx, f"error: {files.os_error_line(err)}", file=sys.stderr)
        raise SystemExit(1) from None
    except TrainingError as err:
        print0(ctx, f"error: {err}" if err.code == 1 else str(err), file=sys.stderr)
        raise SystemExit(err.code) from None
    except RuntimeError as err:
        if not (ctx.distributed and distributed.is_peer_failure(err)):
            raise
        if ctx.local_rank == 0:  # rank 0 may be the process that is gone: each node says it
            print(f"error: lost contact with another process of the run ({distributed.failure_detail(err)}): "
                  "every process stops; start all of them again with --resume (from the last content.pth)",
                  file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        if trainer is not None and trainer.writer is not None:
            trainer.writer.close()
