"""Process groups: the reference's launch flags and torchrun's variables, and DDP's averaging.

The DDP check runs two gloo processes on the CPU and one plain process on the batch the
two together saw.  The step draws t, noises and z inside each replica, so the replicas'
draws are recorded and replayed, interleaved, into the single process (see
tests/_train_ddp_worker.py).
"""

import argparse
import datetime

import pytest
import torch

from tests import _train_ddp_worker as worker
from tests.conftest import REPO, make_trainer, run_command, tiny_args
from utils import checkpoint, distributed
from utils.distributed import Context

STEPS = 3


def test_torchrun_variables_are_read_in_one_place():
    assert distributed.torchrun_ranks({}) is None
    assert distributed.torchrun_ranks({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}) == (3, 1, 8)


def test_one_process_needs_no_process_group():
    seen = []
    args = argparse.Namespace(num_proc_node=1, num_process_per_node=1, device=torch.device("cpu"), local_rank=0)
    distributed.launch(lambda ctx, a: seen.append(ctx), args)
    assert seen == [Context(0, 0, 1, torch.device("cpu"))] and not seen[0].distributed


def test_ranks_wait_out_an_evaluation_on_rank_0(monkeypatch):
    """With --metrics the process group waits METRICS_TIMEOUT (rank 0 evaluates while the others
    sit in a collective), not NCCL's default 10 minutes; without, torch's default."""
    joined = []
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **kw: joined.append(kw["timeout"]))
    for metrics in ("fid", None):
        args = argparse.Namespace(device=torch.device("cpu"), metrics=metrics)
        distributed.setup(0, 0, 2, args.device, distributed.process_group_timeout(args))
    assert joined == [distributed.METRICS_TIMEOUT, None]
    assert datetime.timedelta(hours=1) <= distributed.METRICS_TIMEOUT


def test_missing_gpus_are_refused():
    args = argparse.Namespace(num_process_per_node=1, device=torch.device("cuda"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            distributed.check_devices(args)
    args = argparse.Namespace(num_process_per_node=torch.cuda.device_count() + 1, device=torch.device("cuda"))
    with pytest.raises(ValueError):
        distributed.check_devices(args)


def test_torchrun_launch_trains_with_two_processes(tmp_path, tiny_train):
    """torchrun's variables drive the same path; content.pth holds both ranks' RNG states."""
    port = distributed.free_port("127.0.0.1")
    result = run_command("-m torch.distributed.run", "--nproc_per_node", 2, "--master_port", port,
                         REPO / "train_ddgan.py", *tiny_train, "--num_epoch", 1, "--max_iters_per_epoch", 2,
                         "--save_content", "--save_content_every", 1, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = checkpoint.load_content(tmp_path / "saved_info" / "dd_gan" / "stacked_digits" /
                                    "experiment_cifar_default" / "content.pth")
    assert (saved["world_size"], len(saved["rng"]), saved["epoch"], saved["global_step"]) == (2, 2, 2, 4)


def _run_replicas(tmp_path):
    args = tiny_args("--use_ema", "--ema_decay", "0.9", "--lazy_reg", "2", "--r1_gamma", "1.0",
                     "--num_process_per_node", "2", "--master_port", "0")
    generator = torch.Generator().manual_seed(0)
    batches = torch.rand(2, STEPS, 4, 3, 16, 16, generator=generator) * 2 - 1
    torch.save(batches, tmp_path / "batches.pt")
    args.test_batches, args.test_out = str(tmp_path / "batches.pt"), str(tmp_path)
    distributed.launch(worker.replica, args)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    return batches, ranks


def _assert_close(ours, theirs, parts):
    """Close to rounding: relative 1e-3, absolute 1e-4 of the part's largest entry (a wrong
    reduction, a sum for a mean or a missing sync, is off by 50% or more)."""
    for part in parts:
        scale = max(value.abs().max() for value in theirs[part].values())
        for key, value in ours[part].items():
            torch.testing.assert_close(value, theirs[part][key], rtol=1e-3, atol=1e-4 * scale,
                                       msg=lambda m, part=part, key=key: f"{part} {key}: {m}")


def test_ddp_replicas_agree_and_average_gradients(tmp_path):
    batches, (rank0, rank1) = _run_replicas(tmp_path)
    for step in range(STEPS):
        ours, theirs = rank0["after"][step], rank1["after"][step]
        assert all(torch.equal(ours[part][key], theirs[part][key]) for part in ours for key in ours[part])
    weight = "end_linear.weight"
    assert not torch.equal(rank0["after"][0]["D"][weight], rank0["init"]["D"][weight])

    single = make_trainer(Context(), tiny_args("--use_ema", "--ema_decay", "0.9", "--lazy_reg", "2",
                                               "--r1_gamma", "1.0", "--batch_size", "8"))
    single.generator.load_state_dict(rank0["init"]["G"])
    single.netD.load_state_dict(rank0["init"]["D"])
    for step in range(STEPS):
        pairs = zip(rank0["draws"][step], rank1["draws"][step], strict=True)
        draws = [worker.interleave(a, b) for a, b in pairs]
        with worker.Draws(draws).patched():
            single.train_step(worker.interleave(batches[0, step], batches[1, step]))
        ours, theirs = worker.snapshot(single), rank0["after"][step]
        _assert_close(ours, theirs, ("G.grad", "D.grad", "G", "D", "EMA"))
