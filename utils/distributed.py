"""Process-group set-up, in one place.

Three ways to run, all ending in ``fn(ctx, args)`` once per process with a ``Context``:

* ``torchrun``: RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR/PORT) come from the
  environment; read here and nowhere else.
* the reference's launch: ``--num_process_per_node N`` spawns N processes on this node,
  with global rank ``node_rank * N + local_rank`` out of ``num_proc_node * N``, meeting
  at ``--master_address:--master_port``.
* one process: no process group at all.

NCCL with one GPU per process when CUDA is used, gloo on the CPU.
"""

import contextlib
import datetime
import os
import signal
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class Context:
    """Where this process stands: its ranks, the world size and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def torchrun_ranks(environ=None):
    """(rank, local_rank, world_size) set by torchrun, or None when not launched by it."""
    environ = os.environ if environ is None else environ
    if not all(name in environ for name in TORCHRUN_VARS):
        return None
    return tuple(int(environ[name]) for name in TORCHRUN_VARS)


def local_processes(args):
    """How many processes run on this node: torchrun's, or ``--num_process_per_node``."""
    ranks = torchrun_ranks()
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if ranks else args.num_process_per_node


def planned_world_size(args):
    """Processes in the run: torchrun's WORLD_SIZE, or --num_proc_node x --num_process_per_node."""
    ranks = torchrun_ranks()
    return ranks[2] if ranks else args.num_proc_node * args.num_process_per_node


def check_devices(args):
    """ValueError with the fix when the GPU count is not there (``--device`` itself is parsed by
    utils.argtypes.device)."""
    wanted, have = local_processes(args), torch.cuda.device_count()
    if args.device.type == "cuda" and args.device.index is None and wanted > have:
        raise ValueError(f"{wanted} processes on this node need {wanted} GPUs but {have} are visible: "
                         f"lower --num_process_per_node or pass --device cpu")


def check_port(args):
    """ValueError with the fix when this node must open --master_port and it is taken.

    Only node 0 of the reference's launch opens the port (torchrun opens its own)."""
    if torchrun_ranks() is not None or args.node_rank != 0 or args.master_port == 0 or planned_world_size(args) == 1:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((args.master_address, args.master_port))
        except OSError as err:
            raise ValueError(f"--master_port {args.master_port} on {args.master_address} cannot be opened "
                             f"({err.strerror}): another run may use it; pass another --master_port, "
                             "or 0 for a free one") from None


def free_port(address):
    """A TCP port that is free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def process_device(flag, local_rank):
    """This process's device: ``cuda`` -> the GPU of its local rank; ``cuda:N`` and ``cpu`` as given."""
    if flag.type == "cuda" and flag.index is None:
        return torch.device("cuda", local_rank)
    return flag


# Evaluation during training (--metrics) runs on rank 0 while the other ranks wait in their next
# collective; NCCL's default 10-minute timeout would kill a run whose evaluation (e.g. FID of 50k
# samples at 256 px) takes longer.
METRICS_TIMEOUT = datetime.timedelta(hours=2)


def process_group_timeout(args):
    """How long a collective may wait: METRICS_TIMEOUT with --metrics, else torch's default (None)."""
    return METRICS_TIMEOUT if getattr(args, "metrics", None) else None


def setup(rank, local_rank, world_size, device_flag, timeout=None):
    """Pick the device and join the process group (none for one process); ``timeout`` of its
    collectives (None: torch's default)."""
    device = process_device(device_flag, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                                device_id=device if device.type == "cuda" else None, timeout=timeout)
    return Context(rank, local_rank, world_size, device)


def cleanup(ctx):
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _run(rank, local_rank, world_size, fn, args):
    ctx = setup(rank, local_rank, world_size, args.device, process_group_timeout(args))
    try:
        return fn(ctx, args)
    finally:
        cleanup(ctx)


def _spawned(local_rank, fn, args):
    """Entry of a process started by ``launch``: its global rank from the node's."""
    args.local_rank = local_rank
    rank = args.node_rank * args.num_process_per_node + local_rank
    _run(rank, local_rank, args.num_proc_node * args.num_process_per_node, fn, args)


@contextlib.contextmanager
def _forwarding_signals(context):
    """Pass SIGINT/SIGTERM on to the children, which save and stop on their own."""

    def forward(signum, frame):
        for pid in context.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _spawn(fn, args):
    """Start ``--num_process_per_node`` processes and wait; exit with a failing child's code."""
    port = args.master_port or free_port(args.master_address)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = args.master_address, str(port)
    context = mp.start_processes(_spawned, args=(fn, args), nprocs=args.num_process_per_node,
                                 join=False, start_method="spawn")
    try:
        with _forwarding_signals(context):
            while not context.join():
                pass
    except mp.ProcessExitedException as err:
        raise SystemExit(err.exit_code if err.exit_code and err.exit_code > 0 else 1) from None


def launch(fn, args):
    """Run ``fn(ctx, args)`` in every process of this node (see the module docstring)."""
    ranks = torchrun_ranks()
    if ranks is not None:
        rank, args.local_rank, world_size = ranks
        return _run(rank, args.local_rank, world_size, fn, args)
    if args.num_proc_node * args.num_process_per_node == 1:
        return _run(0, 0, 1, fn, args)
    return _spawn(fn, args)


def barrier(ctx):
    """Wait for every process (no-op for one process)."""
    if ctx.distributed:
        dist.barrier()


def all_reduce(tensor, ctx, op="sum"):
    """In-place all-reduce of ``tensor`` (``op`` sum or max); unchanged for one process."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj, ctx):
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if not ctx.distributed:
        return [obj]
    objects = [None] * ctx.world_size
    dist.all_gather_object(objects, obj)
    return objects


def print0(ctx, *values, **kwargs):
    """print on rank 0 only."""
    if ctx.is_main:
        print(*values, **kwargs, flush=True)
