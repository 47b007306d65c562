"""``python -m pytorch_fid PATH1 PATH2``: the FID command line of ``pytorch_fid.fid_score``."""

from pytorch_fid.fid_score import main

main()
