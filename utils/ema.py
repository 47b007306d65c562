"""Exponential moving average of a model's parameters.

After every generator step: shadow = decay * shadow + (1 - decay) * param.  This gives the
reference's numbers, whose EMA (kept inside the optimizer state) creates the shadow from
the parameters at the first step and then applies the same update; here the shadow
exists from construction (so it can be saved or swapped in at any time) and the first
``update`` resets it to the parameters before blending.  Buffers are not averaged.
"""

import contextlib

import torch


class EMA:
    """Shadow copies of ``model``'s parameters, updated by ``update(model)``."""

    def __init__(self, model, decay):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model):
        """Blend the current parameters into the shadow (call after each optimizer step)."""
        for name, param in model.named_parameters():
            shadow = self.shadow[name]
            if self.num_updates == 0:
                shadow.copy_(param)
            shadow.mul_(self.decay).add_(param, alpha=1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model):
        """Overwrite ``model``'s parameters with the shadow."""
        for name, param in model.named_parameters():
            param.copy_(self.shadow[name])

    @contextlib.contextmanager
    def swapped(self, model):
        """Within the block ``model`` holds the averaged weights; its own come back after."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    param.copy_(backup[name])

    def state_dict(self):
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {name: t.clone() for name, t in self.shadow.items()}}

    def load_state_dict(self, state):
        """Restore a ``state_dict`` (the decay stays the one given at construction, as in the reference)."""
        if state["shadow"].keys() != self.shadow.keys():
            raise ValueError("EMA state does not match the model's parameters")
        self.num_updates = state["num_updates"]
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)
