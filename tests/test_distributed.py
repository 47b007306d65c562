"""Process groups: the reference's launch flags and torchrun's variables, and DDP's averaging.

The DDP check runs two gloo processes on the CPU and one plain process on the batch the
two together saw.  The step draws t, noises and z inside each replica, so the replicas'
draws are recorded and replayed, interleaved, into the single process (see
tests/_train_ddp_worker.py).
"""

import argparse
import datetime
import os
import signal
import socket
import time

import pytest
import torch

from tests import _train_ddp_worker as worker
from tests.conftest import REPO, finish, make_trainer, run_command, start_command, tiny_args, visible_lines
from training import content
from utils import distributed
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
    saved = content.load(tmp_path / "saved_info" / "dd_gan" / "stacked_digits" /
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


# ----------------------------------------------------------------------------- several nodes

def node_command(tmp_path, tiny_train, node_rank, port, *extra):
    """train_ddgan.py as one of two nodes on this machine (the reference's launch flags, gloo)."""
    return ("train_ddgan.py", *tiny_train, "--save_dir", tmp_path, "--num_proc_node", 2, "--node_rank", node_rank,
            "--master_address", "127.0.0.1", "--master_port", port, "--save_content", "--save_content_every", 1,
            *extra)


def run_dir(tmp_path):
    return tmp_path / "dd_gan" / "stacked_digits" / "experiment_cifar_default"


def test_two_nodes_train_an_epoch_and_say_whom_they_wait_for(tmp_path, tiny_train):
    port = distributed.free_port("127.0.0.1")
    node0, node1 = (start_command(*node_command(tmp_path, tiny_train, rank, port, "--num_epoch", 1,
                                                "--max_iters_per_epoch", 2), cwd=tmp_path) for rank in (0, 1))
    results = [finish(node0), finish(node1)]
    assert [result.returncode for result in results] == [0, 0], [result.stderr[-2000:] for result in results]
    assert f"node 0: waiting for the other 1 process of the run at 127.0.0.1:{port}" in results[0].stderr
    assert f"node 1: waiting for node 0 of the run at 127.0.0.1:{port}" in results[1].stderr
    saved = content.load(run_dir(tmp_path) / "content.pth")
    assert (saved["world_size"], saved["epoch"], saved["global_step"]) == (2, 2, 4)


def test_torchrun_with_two_nodes_trains_an_epoch(tmp_path, tiny_train):
    port = distributed.free_port("127.0.0.1")
    nodes = [start_command("-m torch.distributed.run", "--nnodes", 2, "--nproc_per_node", 1, "--node_rank", rank,
                           "--master_addr", "127.0.0.1", "--master_port", port, REPO / "train_ddgan.py", *tiny_train,
                           "--save_dir", tmp_path, "--num_epoch", 1, "--max_iters_per_epoch", 2, "--save_content",
                           cwd=tmp_path) for rank in (0, 1)]
    results = [finish(node, timeout=300) for node in nodes]
    assert [result.returncode for result in results] == [0, 0], [result.stderr[-2000:] for result in results]
    saved = content.load(run_dir(tmp_path) / "content.pth")
    assert (saved["world_size"], saved["epoch"]) == (2, 2)


@pytest.mark.parametrize("node_rank", [0, 1])
def test_a_node_whose_peer_never_comes_stops_with_one_line(tmp_path, tiny_train, node_rank):
    port = distributed.free_port("127.0.0.1")
    result = run_command(*node_command(tmp_path, tiny_train, node_rank, port, "--join_timeout", 3), cwd=tmp_path)
    lines = visible_lines(result.stderr)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 2 and lines[0].startswith(f"node {node_rank}: waiting for "), result.stderr
    expected = "did not all arrive at" if node_rank == 0 else "no answer from node 0 at"
    assert expected in lines[1] and "within 3 s" in lines[1], lines[1]


@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_node_stops_the_other_with_one_line_and_both_resume(tmp_path, tiny_train, victim):
    port = distributed.free_port("127.0.0.1")
    nodes = [start_command(*node_command(tmp_path, tiny_train, rank, port, "--num_epoch", 1000), cwd=tmp_path)
             for rank in (0, 1)]
    saved = run_dir(tmp_path) / "content.pth"
    deadline = time.monotonic() + 240
    while not saved.exists() or content.load(saved)["epoch"] < 2:
        assert time.monotonic() < deadline and all(node.poll() is None for node in nodes), "no progress"
        time.sleep(0.2)
    os.killpg(nodes[victim].pid, signal.SIGKILL)
    survivor = finish(nodes[1 - victim], timeout=120)
    finish(nodes[victim])
    assert survivor.returncode == 1, survivor.stderr[-2000:]
    lines = [line for line in visible_lines(survivor.stderr) if not line.startswith(f"node {1 - victim}: waiting")]
    assert len(lines) == 1 and lines[0].startswith("error: lost contact with another process of the run ("), lines
    assert "--resume" in lines[0] and "Traceback" not in survivor.stderr
    last = content.load(saved)["epoch"]
    resumed = [start_command(*node_command(tmp_path, tiny_train, rank, port, "--num_epoch", 1000, "--resume",
                                           "--stop_after_epoch", last), cwd=tmp_path) for rank in (0, 1)]
    results = [finish(node) for node in resumed]
    assert [result.returncode for result in results] == [0, 0], [result.stderr[-2000:] for result in results]
    assert content.load(saved)["epoch"] == last + 1


def test_the_port_check_accepts_a_port_that_torch_can_bind(tmp_path, tiny_train):
    """A port whose last connection lingers (TIME_WAIT, as after a killed run) is bound with SO_REUSEADDR,
    as torch's store binds it; a port with a listener is still refused."""
    args = tiny_args("--num_proc_node", 2, "--master_port", distributed.free_port("127.0.0.1"))
    with socket.create_server(("127.0.0.1", args.master_port)) as server:
        client = socket.create_connection(("127.0.0.1", args.master_port))
        accepted, _ = server.accept()
        accepted.close()  # the side that closes first keeps the port in TIME_WAIT
        client.close()
    distributed.check_port(args)  # no error
    with socket.create_server(("127.0.0.1", args.master_port)), pytest.raises(ValueError, match="cannot be opened"):
        distributed.check_port(args)
