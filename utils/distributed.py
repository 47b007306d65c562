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
import multiprocessing.connection
import os
import re
import socket
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from utils import signals

TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


class JoinFailed(RuntimeError):
    """The processes of a run did not all meet within --join_timeout (one line, with the fix)."""


class PeerLost(RuntimeError):
    """A collective failed: another process of the run has stopped, or can no longer be reached."""


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

    Only node 0 of the reference's launch opens the port (torchrun opens its own).  Bound as torch's
    store binds it (SO_REUSEADDR), so a port whose last connections linger after a run is not refused."""
    if torchrun_ranks() is not None or args.node_rank != 0 or args.master_port == 0 or planned_world_size(args) == 1:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def meet(rank, world_size, node, join_timeout):
    """The store through which the processes of a run find each other at MASTER_ADDR:MASTER_PORT
    (hosted by rank 0).  With several nodes, each node's first process says whom it waits for, where
    and for how long; JoinFailed (one line) when they have not all come after ``join_timeout`` s."""
    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    nodes, node_rank, first_on_node = node
    if nodes > 1 and first_on_node:
        whom = f"the other {world_size - 1} process{'es' * (world_size > 2)}" if rank == 0 else "node 0"
        print(f"node {node_rank}: waiting for {whom} of the run at {address}:{port} (up to {join_timeout} s, "
              "--join_timeout)", file=sys.stderr, flush=True)
    try:
        return dist.TCPStore(address, port, world_size, is_master=rank == 0, wait_for_workers=True,
                             timeout=datetime.timedelta(seconds=join_timeout))
    except (RuntimeError, TimeoutError) as err:
        if rank == 0:
            raise JoinFailed(f"node {node_rank}: the run's {world_size} processes did not all arrive at {address}:"
                             f"{port} within {join_timeout} s: start every node (--node_rank 0..{nodes - 1}) with "
                             "the same --num_proc_node/--num_process_per_node/--master_address/--master_port") from err
        raise JoinFailed(f"node {node_rank}: no answer from node 0 at {address}:{port} within {join_timeout} s: "
                         "start node 0 (--node_rank 0), or check --master_address/--master_port") from err


def setup(rank, local_rank, world_size, device_flag, timeout=None, store=None):
    """Pick the device and join the process group (none for one process); ``timeout`` of its
    collectives (None: torch's default); ``store``: where the processes meet (None: torchrun's)."""
    device = process_device(device_flag, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        where = {"store": store} if store is not None else {"init_method": "env://"}
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout,
                                device_id=device if device.type == "cuda" else None, **where)
    return Context(rank, local_rank, world_size, device)


def cleanup(ctx):
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _run(rank, local_rank, world_size, fn, args, node=None):
    """``fn(ctx, args)`` in a process of the run; ``node`` (nodes, node rank, first process of the node)
    for the reference's launch, whose processes meet through ``meet`` (torchrun's through its store)."""
    try:
        store = None if node is None else meet(rank, world_size, node, args.join_timeout)
    except JoinFailed as err:
        raise SystemExit(str(err) if node[2] else 1) from None
    ctx = setup(rank, local_rank, world_size, args.device, process_group_timeout(args), store)
    try:
        return fn(ctx, args)
    finally:
        cleanup(ctx)


def _spawned(local_rank, fn, args):
    """Entry of a process started by ``launch``: its global rank from the node's."""
    args.local_rank = local_rank
    rank = args.node_rank * args.num_process_per_node + local_rank
    _run(rank, local_rank, args.num_proc_node * args.num_process_per_node, fn, args,
         node=(args.num_proc_node, args.node_rank, local_rank == 0))


def _spawn(fn, args):
    """Start ``--num_process_per_node`` processes and wait; exit with a failing child's code.

    A stop signal (to this process alone, or to the whole group) is passed on to the children,
    which save and stop on their own; this process then exits as they do."""
    port = args.master_port or free_port(args.master_address)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = args.master_address, str(port)
    # torch's C++ side logs a failed connection with a stack dump; the processes here say it in one line
    # (TORCH_CPP_LOG_LEVEL=INFO or WARNING on the command line brings those logs back)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    signals.start_resource_tracker()  # the children share this process's tracker: started SIGHUP-proof
    context = mp.start_processes(_spawned, args=(fn, args), nprocs=args.num_process_per_node,
                                 join=False, start_method="spawn")
    received = []

    def forward(signum, frame):
        received.append(signum)
        for pid in context.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    try:
        with signals.handled(forward):
            _wait_for_stops(context)
            while not context.join():
                pass
    except mp.ProcessExitedException as err:
        raise SystemExit(_exit_status(err.exit_code, received)) from None


def _stopped_by_signal(code):
    return code is not None and (code < 0 or code - 128 in signals.STOP_SIGNALS)


def _wait_for_stops(context):
    """Wait while the children that have ended stopped for a signal (or succeeded): the others are
    stopping too, and must not be ended before they are done (torch's join ends them at the first
    non-zero exit).  Returns at once when one has failed otherwise, or when all have ended."""
    processes = context.processes
    while alive := [process for process in processes if process.is_alive()]:
        if any(process.exitcode not in (None, 0) and not _stopped_by_signal(process.exitcode)
               for process in processes):
            return
        multiprocessing.connection.wait([process.sentinel for process in alive])


def _exit_status(child_code, received):
    """This process's exit status from a failed child's: its own, or 128 + the signal that killed it
    (a child still starting when a stop signal came: nothing to save yet; said in one line)."""
    if child_code is not None and child_code > 0:
        return child_code
    signum = -child_code if child_code is not None and child_code < 0 else None
    if signum is None and received:
        signum = received[0]
    if signum is None:
        return 1
    if signum in signals.STOP_SIGNALS:
        print(f"stopped by {signals.signal_name(signum)} while the processes were starting: nothing to save yet",
              file=sys.stderr, flush=True)
    return signals.exit_code(signum)


def launch(fn, args):
    """Run ``fn(ctx, args)`` in every process of this node (see the module docstring)."""
    ranks = torchrun_ranks()
    if ranks is not None:
        rank, args.local_rank, world_size = ranks
        return _run(rank, args.local_rank, world_size, fn, args)
    if args.num_proc_node * args.num_process_per_node == 1:
        return _run(0, 0, 1, fn, args)
    return _spawn(fn, args)


def _collective(operation, *args, **kwargs):
    """Run a torch.distributed collective; its failure (a peer stopped or unreachable) as PeerLost."""
    try:
        return operation(*args, **kwargs)
    except (RuntimeError, dist.DistError) as err:
        raise PeerLost(failure_detail(err)) from err


# What the backends say when a peer process has gone (DDP's gradient all-reduce raises plain RuntimeErrors).
PEER_FAILURE_MARKERS = ("gloo/transport", "Connection closed by peer", "Connection reset by peer", "NCCL")


def is_peer_failure(err):
    """Whether ``err`` says that a collective failed because another process of the run is gone."""
    if isinstance(err, (PeerLost, dist.DistError)):
        return True
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in PEER_FAILURE_MARKERS)


def failure_detail(err):
    """The gist of a backend's error: its first line, without gloo's source location and advice."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    line = re.sub(r"^\[[^\]]*\.(cc|cpp):\d+\] ", "", line)
    return line.split(". This is typically")[0]


def barrier(ctx):
    """Wait for every process (no-op for one process)."""
    if ctx.distributed:
        _collective(dist.barrier)


def all_reduce(tensor, ctx, op="sum"):
    """In-place all-reduce of ``tensor`` (``op`` sum or max); unchanged for one process."""
    if ctx.distributed:
        _collective(dist.all_reduce, tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj, ctx):
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if not ctx.distributed:
        return [obj]
    objects = [None] * ctx.world_size
    _collective(dist.all_gather_object, objects, obj)
    return objects


def print0(ctx, *values, **kwargs):
    """print on rank 0 only."""
    if ctx.is_main:
        print(*values, **kwargs, flush=True)
