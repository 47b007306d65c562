"""Test hook for the DDP test: run ``train_step`` while recording or replaying every draw.

The step draws t (torch.randint), the pair noises and the posterior noise
(torch.randn_like) and z (torch.randn).  ``Draws`` patches those three functions: in
"record" mode it keeps what each replica drew, in "replay" mode it hands out given
tensors instead, in the same order.  So one process can be fed exactly the draws of
two DDP replicas, interleaved along the batch, and must land on the same weights.
"""

import contextlib
from unittest import mock

import torch

from score_sde.checkpoint import unwrap
from tests.conftest import make_trainer
from utils import rng


class Draws:
    """Record (``tensors`` empty) or replay (``tensors`` given) the step's random draws."""

    def __init__(self, tensors=None):
        self.replay = tensors is not None
        self.tensors = list(tensors or [])
        self.real = {name: getattr(torch, name) for name in ("randint", "randn", "randn_like")}

    def _draw(self, name, shape):
        def draw(*args, **kwargs):
            if not self.replay:
                out = self.real[name](*args, **kwargs)
                self.tensors.append(out.clone())
                return out
            out = self.tensors.pop(0)
            assert tuple(out.shape) == tuple(shape(*args, **kwargs)), (name, out.shape)
            return out.clone()

        return draw

    @contextlib.contextmanager
    def patched(self):
        shapes = {"randint": lambda low, high, size, **kw: size,
                  "randn": lambda *size, **kw: size,
                  "randn_like": lambda x, **kw: x.shape}
        with contextlib.ExitStack() as stack:
            for name, shape in shapes.items():
                stack.enter_context(mock.patch.object(torch, name, self._draw(name, shape)))
            yield self


def interleave(first, second):
    """Replica tensors (B, ...) -> (2B, ...) with first[i] at 2i and second[i] at 2i + 1.

    The discriminators' minibatch stddev groups samples b, b + 2B/4, ... of a batch, so this
    order puts each replica's samples in a group of their own, as in the replica itself.
    """
    return torch.stack([first, second], dim=1).reshape(-1, *first.shape[1:])


def snapshot(trainer):
    """Copies of G, D and EMA weights and of the gradients the last step left (G's and D's)."""
    G, D = trainer.generator, unwrap(trainer.netD)
    state = {"G": G.state_dict(), "D": D.state_dict(), "EMA": trainer.ema.state_dict()["shadow"],
             "G.grad": {k: p.grad for k, p in G.named_parameters() if p.grad is not None},
             "D.grad": {k: p.grad for k, p in D.named_parameters() if p.grad is not None}}
    return {part: {k: v.detach().clone() for k, v in values.items()} for part, values in state.items()}


@torch.no_grad()
def perturb(trainer, scale=0.01):
    """Add the same noise to every weight on every rank.

    At initialisation many layers are zero-scaled, so many gradients are at rounding level
    and Adam's first, sign-like step would turn rounding differences into weight
    differences; away from it the comparison measures the averaging, not the rounding.
    """
    generator = torch.Generator().manual_seed(1)
    for model in (trainer.generator, unwrap(trainer.netD)):
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def replica(ctx, args):
    """Entry of each DDP process: train on its share of ``args.test_batches``, save what it saw."""
    batches = torch.load(args.test_batches)[ctx.rank]
    rng.seed_everything(args.seed + ctx.rank)
    trainer = make_trainer(ctx, args)
    perturb(trainer)
    result = {"init": snapshot(trainer), "draws": [], "after": []}
    for real in batches:
        with Draws().patched() as draws:
            trainer.train_step(real)
        result["draws"].append(draws.tensors)
        result["after"].append(snapshot(trainer))
    torch.save(result, f"{args.test_out}/rank{ctx.rank}.pt")
