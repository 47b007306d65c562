"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019).

Each set of feature vectors stands for its manifold: the union of balls around its points,
each of radius the distance to that point's k-th nearest neighbour in the set (k = 3).
Precision is the fraction of generated points inside the real manifold, recall the fraction
of real points inside the generated one.  The features are the FID Inception-v3's pool3
(2048-d).  Distances are computed in (batch x batch) blocks, so memory stays bounded for
50k x 50k pairs.
"""

import torch


def knn_radii(features, k=3, batch_size=5000):
    """(N,) distance from each row of ``features`` (N, D) to its k-th nearest other row."""
    if len(features) <= k:
        raise ValueError(f"k={k} needs more than {k} feature vectors per set, got {len(features)}")
    radii = []
    for rows in features.split(batch_size):
        nearest = None  # (b, <= k + 1) smallest distances so far; the row itself is one of them (0)
        for cols in features.split(batch_size):
            distances = torch.cdist(rows, cols)
            candidates = distances if nearest is None else torch.cat([nearest, distances], 1)
            nearest = candidates.topk(min(k + 1, candidates.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k])
    return torch.cat(radii)


def inside_manifold(query, reference, radii, batch_size=5000):
    """(Nq,) bool: whether each query row lies within radii[j] of some reference row j."""
    inside = []
    for rows in query.split(batch_size):
        hit = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        for cols, col_radii in zip(reference.split(batch_size), radii.split(batch_size), strict=True):
            hit |= (torch.cdist(rows, cols) <= col_radii).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def compute_precision_recall(real_features, fake_features, k=3, batch_size=5000, device=None):
    """(precision, recall) of fake against real features, both (N, D) arrays or tensors."""
    real, fake = (torch.as_tensor(f, dtype=torch.float32, device=device)
                  for f in (real_features, fake_features))
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    real_radii, fake_radii = knn_radii(real, k, batch_size), knn_radii(fake, k, batch_size)
    precision = inside_manifold(fake, real, real_radii, batch_size).sum().item() / len(fake)
    recall = inside_manifold(real, fake, fake_radii, batch_size).sum().item() / len(real)
    return precision, recall
