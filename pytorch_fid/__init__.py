"""FID, Inception Score and improved precision/recall in plain PyTorch, with pytorch-fid's interface."""
