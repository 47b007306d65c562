"""pytorch-fid's ``pytorch_fid.inception`` names, for code written against pytorch-fid: the network is
``metrics.inception``'s (the FID Inception-v3 and its weights file)."""

from metrics.inception import (
                               FID_WEIGHTS_URL,
                               FIDInceptionA,
                               FIDInceptionC,
                               FIDInceptionE_1,
                               FIDInceptionE_2,
                               InceptionV3,
                               fid_inception_v3,
)

__all__ = ["FID_WEIGHTS_URL", "FIDInceptionA", "FIDInceptionC", "FIDInceptionE_1", "FIDInceptionE_2", "InceptionV3",
           "fid_inception_v3"]
