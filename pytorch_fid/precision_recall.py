"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019).

    python -m pytorch_fid.precision_recall REAL FAKE        # folders or .npy/.npz sample arrays

Each set of feature vectors stands for its manifold: the union of balls around its points,
each of radius the distance to that point's k-th nearest neighbour in the set (k = 3).
Precision is the fraction of generated points inside the real manifold, recall the fraction
of real points inside the generated one.  The features are the FID Inception-v3's pool3
(2048-d), extracted as for FID.  Distances are computed in (batch x batch) blocks, so memory
stays bounded for 50k x 50k pairs.
"""

import argparse

import torch

from pytorch_fid.cli import add_network_flags, build_inception, positive_int, user_errors
from pytorch_fid.data import open_images
from pytorch_fid.fid_score import get_activations


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


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m pytorch_fid.precision_recall",
                                     description="Improved precision and recall of FAKE against REAL images.")
    parser.add_argument("real", help="real images: a folder or a .npy/.npz sample array")
    parser.add_argument("fake", help="generated images: a folder or a .npy/.npz sample array")
    parser.add_argument("--k", type=positive_int, default=3, help="neighbourhood size (default: 3)")
    parser.add_argument("--nn-batch-size", "--nn_batch_size", dest="nn_batch_size", type=positive_int,
                        default=5000, help="rows per block of pairwise distances (default: 5000)")
    add_network_flags(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        sources = [open_images(args.real), open_images(args.fake)]
        for name, images in zip(("REAL", "FAKE"), sources, strict=True):
            if len(images) <= args.k:
                raise ValueError(f"{name} has {len(images)} images; --k {args.k} needs more")
        model = build_inception(args)
        real, fake = (get_activations(images, model, args.batch_size, 2048, args.device, args.num_workers)
                      for images in sources)
        precision, recall = compute_precision_recall(real, fake, args.k, args.nn_batch_size, args.device)
    print(f"Precision: {precision:.4f}")
    print(f"Recall: {recall:.4f}")


if __name__ == "__main__":
    main()
