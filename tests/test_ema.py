"""EMA of the generator: the reference's numbers, swapping, saving."""

import pytest
import torch
import torch.nn as nn

from utils.ema import EMA

DECAY = 0.9


def _reference_ema_run(model, steps, decay):
    """The reference's EMA as it behaves: its shadow lives in the optimizer state, is created
    from the parameters at the first step, and is then blended like every later step."""
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    shadow = {}
    for step in range(steps):
        opt.zero_grad()
        model(torch.full((2, 3), float(step))).square().sum().backward()
        opt.step()
        for name, p in model.named_parameters():
            shadow.setdefault(name, p.detach().clone())
            shadow[name].mul_(decay).add_(p.detach(), alpha=1 - decay)
    return shadow


def _our_run(model, steps, decay):
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    ema = EMA(model, decay)
    for step in range(steps):
        opt.zero_grad()
        model(torch.full((2, 3), float(step))).square().sum().backward()
        opt.step()
        ema.update(model)
    return ema


def test_matches_the_reference_ema_exactly():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    twin = nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    ours = _our_run(model, 5, DECAY)
    theirs = _reference_ema_run(twin, 5, DECAY)
    assert all(torch.equal(ours.shadow[name], theirs[name]) for name in theirs)
    assert not torch.equal(ours.shadow["weight"], model.weight)


def test_first_update_starts_from_the_parameters_not_the_initial_weights():
    model = nn.Linear(3, 2)
    ema = EMA(model, DECAY)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], model.weight.detach(), rtol=0, atol=1e-6)


def test_swapped_puts_the_average_in_and_restores_the_weights():
    model = nn.Linear(3, 2)
    ema = EMA(model, DECAY)
    ema.update(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    trained = model.weight.detach().clone()
    with ema.swapped(model):
        assert torch.equal(model.weight, ema.shadow["weight"])
    assert torch.equal(model.weight, trained)
    with pytest.raises(RuntimeError), ema.swapped(model):
        raise RuntimeError("a failing save")
    assert torch.equal(model.weight, trained)


def test_state_dict_round_trip_keeps_the_decay_of_the_command_line():
    model = nn.Linear(3, 2)
    ema = EMA(model, DECAY)
    ema.update(model)
    restored = EMA(nn.Linear(3, 2), 0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 1 and restored.decay == 0.5
    assert all(torch.equal(restored.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(ValueError, match="does not match"):
        EMA(nn.Linear(3, 4, bias=False), DECAY).load_state_dict(ema.state_dict())
