"""FID, Inception Score and improved precision/recall in plain PyTorch, with pytorch-fid's interface."""

__version__ = "0.3.0"  # the pytorch-fid release whose interface, features and statistics files this matches
