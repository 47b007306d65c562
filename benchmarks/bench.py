"""Throughput, memory and FLOP/s of DDGAN sampling and training.

    python benchmarks/bench.py --config cifar10 --what sample train --device cuda
    python benchmarks/bench.py --config celeba_256 --amp bf16 --channels_last --compile
    python benchmarks/bench.py --config tiny --quick           # seconds, on a CPU

Sampling runs utils.sampling.Sampler (what test_ddgan.py uses), training runs
training.trainer.Trainer.train_step (what train_ddgan.py uses), each with the opt-in
fast paths given.  "train_r1_step" is an iteration with the R1 penalty, "train_plain_step"
one without (with --lazy_reg k, k - 1 of every k steps).  Prints one JSON line per
measurement and appends a row to benchmarks/RESULTS.md (machine, versions, the command).
Timings: warm-up, then ``--repeats`` timed runs (CUDA events on GPU, perf_counter on CPU);
median and interquartile spread.
"""

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402
from torch.utils.flop_counter import flop_registry  # noqa: E402

import train_ddgan  # noqa: E402
from score_sde.models import build_generator  # noqa: E402
from training.trainer import Trainer  # noqa: E402
from utils import argtypes, flags, performance  # noqa: E402
from utils.distributed import Context  # noqa: E402
from utils.sampling import Sampler  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"

# The model flags of the README commands (ORIGINAL_COMMANDS.md), plus a tiny CPU config.
CONFIGS = {
    "cifar10": "--dataset cifar10 --num_channels_dae 128 --num_timesteps 4 --num_res_blocks 2 --nz 100 "
               "--z_emb_dim 256 --n_mlp 4 --ch_mult 1 2 2 2 --ngf 64",
    "celeba_256": "--dataset celeba_256 --image_size 256 --num_channels_dae 64 --ch_mult 1 1 2 2 4 4 "
                  "--num_timesteps 2 --num_res_blocks 2 --ngf 64",
    "lsun": "--dataset lsun --image_size 256 --num_channels_dae 64 --ch_mult 1 1 2 2 4 4 --num_timesteps 4 "
            "--num_res_blocks 2 --ngf 64",
    "tiny": "--dataset cifar10 --image_size 16 --num_channels_dae 16 --ch_mult 1 2 --num_res_blocks 1 "
            "--attn_resolutions 8 --nz 8 --z_emb_dim 16 --t_emb_dim 16 --n_mlp 1 --ngf 4",
}
DEFAULT_BATCH = {"sample": 100, "train": {"cifar10": 64, "celeba_256": 4, "lsun": 8, "tiny": 4}}


def parse_args(argv=None):
    parser = argtypes.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cifar10", choices=sorted(CONFIGS), help="named model configuration")
    parser.add_argument("--what", nargs="+", default=["sample", "train"], choices=("sample", "train"))
    parser.add_argument("--device", type=argtypes.device, default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--sample_batch", type=argtypes.positive_int, default=None, help="default 100")
    parser.add_argument("--train_batch", type=argtypes.positive_int, default=None, help="per-GPU batch")
    parser.add_argument("--warmup", type=argtypes.nonneg_int, default=3)
    parser.add_argument("--repeats", type=argtypes.positive_int, default=10)
    parser.add_argument("--r1_gamma", type=argtypes.nonneg_float, default=0.02)
    parser.add_argument("--quick", action="store_true", help="CI mode: batch 4, 1 warm-up, 2 repeats")
    parser.add_argument("--no_record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the rows go to")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="also profile one call of each workload: top-op table and Chrome trace into DIR")
    flags.add_performance_flags(parser)
    args = parser.parse_args(argv)
    model = train_ddgan.parse_args(shlex.split(CONFIGS[args.config]))
    args.model = model
    if args.quick:
        args.sample_batch, args.train_batch, args.warmup, args.repeats = 4, 4, 1, 2
    args.sample_batch = args.sample_batch or DEFAULT_BATCH["sample"]
    args.train_batch = args.train_batch or DEFAULT_BATCH["train"][args.config]
    return args


# ----------------------------------------------------------------------------- timing

def summarize(times):
    """Median and interquartile range (seconds)."""
    if len(times) < 2:
        return times[0], 0.0
    q = statistics.quantiles(times, n=4)
    return statistics.median(times), q[2] - q[0]


class FlopCount(TorchDispatchMode):
    """Sums torch's FLOP formulas (convolutions, matmuls, attention) over every dispatched op.

    torch's FlopCounterMode also tracks modules with backward hooks, which autograd.grad
    (the R1 penalty) does not support; this counter does no module tracking.
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn):
    """FLOPs of one call of ``fn``."""
    with FlopCount() as counter:
        fn()
    return counter.total


def peak_memory(device, fn):
    """Peak GPU memory (GiB) of one call of ``fn``; None on CPU."""
    if torch.device(device).type != "cuda":
        fn()
        return None
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device) / 2**30


# ----------------------------------------------------------------------------- profiling

# Where the time goes, by kind of operator (first match wins; the rest is "other").
OP_CLASSES = (
    ("convolution", ("conv", "cudnn", "winograd", "implicit_gemm")),
    ("matmul", ("mm", "matmul", "linear", "gemm", "cutlass", "sm90_xmma")),
    ("attention", ("attention", "flash", "fmha", "softmax")),
    ("normalization", ("group_norm", "norm")),
    ("elementwise", ("add", "mul", "sub", "div", "silu", "leaky", "relu", "sigmoid", "copy", "fill", "cat",
                     "elementwise", "vectorized", "triton", "where", "pow", "sqrt", "exp", "rsqrt", "clamp")),
)


def op_class(name):
    name = name.lower()
    return next((kind for kind, keys in OP_CLASSES if any(key in name for key in keys)), "other")


def profile(fn, device, folder, name):
    """Profile one call of ``fn`` (after the timing runs warmed it up).  Writes ``{name}.txt`` (the
    top-25 ops by self time) and ``{name}.trace.json`` (open in chrome://tracing or Perfetto), and
    returns the share of self time per operator class: on CUDA that is kernel time on the GPU,
    on the CPU the operators' own time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda
    with torch_profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize(device)
    folder.mkdir(parents=True, exist_ok=True)
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    (folder / f"{name}.txt").write_text(prof.key_averages().table(sort_by=sort_by, row_limit=25) + "\n")
    prof.export_chrome_trace(str(folder / f"{name}.trace.json"))
    shares = {}
    if cuda:  # kernels, memcpys and memsets on the GPU
        events = [(e.name, e.time_range.elapsed_us()) for e in prof.events()
                  if e.device_type == torch.autograd.DeviceType.CUDA]
    else:  # leaf CPU operators (self time only, so nothing counts twice)
        events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(us for _, us in events) or 1.0
    for op, us in events:
        shares[op_class(op)] = shares.get(op_class(op), 0.0) + us / total
    return {kind: round(share, 3) for kind, share in sorted(shares.items(), key=lambda kv: -kv[1])}


# ----------------------------------------------------------------------------- workloads

def train_args(args, folder):
    """train_ddgan.py's parsed flags for this configuration (the real training code path)."""
    argv = shlex.split(CONFIGS[args.config]) + [
        "--batch_size", str(args.train_batch), "--r1_gamma", str(args.r1_gamma), "--lazy_reg", "2",
        "--amp", args.amp, "--num_workers", "0", "--no-tensorboard", "--save_dir", folder, "--device",
        str(args.device)]
    argv += ["--channels_last"] * args.channels_last + ["--compile"] * args.compile
    return train_ddgan.parse_args(argv)


def sampler(args):
    """One call = the whole T-step reverse chain for ``sample_batch`` images (x_T drawn inside)."""
    config = flags.model_config(args.model)
    generator = build_generator(config).to(args.device).eval()
    sample = Sampler(generator, config, args.device, amp=args.amp,
                     channels_last=args.channels_last, compile=args.compile)
    return lambda: sample(args.sample_batch)


def trainer(args, folder, with_r1):
    """One call = one full iteration of ``Trainer.train_step`` (D real [+ R1], D fake, G, EMA)."""
    targs = train_args(args, folder)
    model = args.model
    shape = (args.train_batch, model.num_channels, model.image_size, model.image_size)
    data = TensorDataset(torch.randn(shape), torch.zeros(args.train_batch))
    run = Trainer(Context(device=args.device), targs, data)
    real = torch.randn(shape, device=args.device)

    def step():
        run.global_step = 0 if with_r1 else 1  # --lazy_reg 2: R1 on even steps only
        run.train_step(real)

    return step


# ----------------------------------------------------------------------------- reporting

def machine(device):
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def record(args, rows, command):
    """Append one markdown table row per measurement to ``args.results``."""
    stamp = datetime.date.today().isoformat()
    new = not args.results.exists()
    with args.results.open("a") as f:
        if new:
            f.write("# Benchmark results\n\nRows appended by `benchmarks/bench.py`; newest last.\n\n"
                    "| date | machine | torch | config | what | batch | amp | channels_last | compile | "
                    "median s | spread s | img/s | peak GiB | TFLOP/s | command |\n"
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            mem = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
            f.write(f"| {stamp} | {r['machine']} | {r['torch']} | {r['config']} | {r['what']} | {r['batch']} | "
                    f"{r['amp']} | {r['channels_last']} | {r['compile']} | {r['median_s']:.4f} | "
                    f"{r['spread_s']:.4f} | {r['img_per_s']:.1f} | {mem} | {r['tflops']:.2f} | `{command}` |\n")


def measure(args, what, fn, batch):
    flops = count_flops(fn)
    peak = peak_memory(args.device, fn)
    median, spread = summarize(performance.time_calls(fn, args.device, args.warmup, args.repeats))
    row = {"config": args.config, "what": what, "device": str(args.device), "machine": machine(args.device),
            "torch": torch.__version__, "batch": batch, "amp": args.amp, "channels_last": args.channels_last,
            "compile": args.compile, "median_s": median, "spread_s": spread, "img_per_s": batch / median,
            "peak_gib": peak, "flops": flops, "tflops": flops / median / 1e12}
    if args.profile is not None:
        tag = f"{args.config}_{what}_{args.amp}" + "_cl" * args.channels_last + "_compile" * args.compile
        row["time_shares"] = profile(fn, args.device, args.profile, tag)
    return row


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    rows = []
    if "sample" in args.what:
        rows.append(measure(args, "sample", sampler(args), args.sample_batch))
    if "train" in args.what:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure(args, "train_r1_step", trainer(args, folder, True), args.train_batch))
            rows.append(measure(args, "train_plain_step", trainer(args, folder, False), args.train_batch))
    for row in rows:
        print(json.dumps(row), flush=True)
    if not args.no_record:
        record(args, rows, "python benchmarks/bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    return rows


if __name__ == "__main__":
    main()
