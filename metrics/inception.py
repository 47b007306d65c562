"""The Inception-v3 network FID is defined with, as the pytorch-fid package exposes it.

FID, Inception Score and the published numbers use the 2015 TensorFlow Inception graph,
not torchvision's ImageNet model: its average pools ignore the zero padding, its last
block max-pools, and it has 1008 classes (its blocks: ``FIDInceptionA``, ``FIDInceptionC``,
``FIDInceptionE_1``, ``FIDInceptionE_2``, pytorch-fid's names).  ``fid_inception_v3`` builds that network and
loads ``pt_inception-2015-12-05-6726825d.pth`` (the TF weights converted by pytorch-fid)
from a local file; ``InceptionV3`` wraps it with the pytorch-fid interface (feature blocks
of 64, 192, 768 and 2048 channels).  Module names are torchvision's, which the weights
file uses.
"""

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from utils.files import NO_DOWNLOAD_ENV_VAR, downloads_allowed

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
WEIGHTS_ENV_VARS = ("DDGAN_INCEPTION_WEIGHTS", "FID_WEIGHTS_PATH")
RANDOM_WEIGHTS_SEED = 0

# The modules making up each feature block of InceptionV3.
_BLOCKS = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"),
    ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"),
    ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"),
)


class InceptionWeightsError(OSError):
    """The FID Inception weights are missing, unreadable or not the expected file.  A message that
    tells the user to pass the file names the command's flag: ``--weights`` (the pytorch_fid command
    lines) in place of FLAG, unless ``for_flag`` gives the error for another command."""

    FLAG = "{flag}"

    def __init__(self, message, flag="--weights"):
        super().__init__(message.replace(self.FLAG, flag))
        self.message = message

    def for_flag(self, flag):
        """The same error for a command whose flag for the weights file is ``flag`` (e.g. --inception_weights)."""
        return InceptionWeightsError(self.message, flag)


def avg_pool_same(x):
    """3x3 stride-1 average over real pixels only, as TF's 'SAME' padding does (the FID network)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def avg_pool_padded(x):
    """3x3 stride-1 average counting the zero padding (torchvision's ImageNet network)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


def max_pool_same(x):
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def max_pool_down(x):
    return F.max_pool2d(x, kernel_size=3, stride=2)


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _chain(x, *layers):
    for layer in layers:
        x = layer(x)
    return x


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pool branches (Mixed_5b..5d)."""

    def __init__(self, in_channels, pool_features, pool=avg_pool_padded):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            _chain(x, self.branch5x5_1, self.branch5x5_2),
            _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            self.branch_pool(self.pool(x)),
        ], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            max_pool_down(x),
        ], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e)."""

    def __init__(self, in_channels, channels_7x7, pool=avg_pool_padded):
        super().__init__()
        c7 = channels_7x7
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
            _chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                   self.branch7x7dbl_5),
            self.branch_pool(self.pool(x)),
        ], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            _chain(x, self.branch3x3_1, self.branch3x3_2),
            _chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4),
            max_pool_down(x),
        ], 1)


class InceptionE(nn.Module):
    """8x8 block whose 3x3 branches split into 1x3 and 3x1 halves (Mixed_7b, 7c)."""

    def __init__(self, in_channels, pool=avg_pool_padded):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3dbl = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3),
            self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl),
            self.branch_pool(self.pool(x)),
        ], 1)


class FIDInceptionA(InceptionA):
    """InceptionA of the FID graph: its pool branch averages real pixels only (pytorch-fid's name)."""

    def __init__(self, in_channels, pool_features):
        super().__init__(in_channels, pool_features, pool=avg_pool_same)


class FIDInceptionC(InceptionC):
    """InceptionC of the FID graph: its pool branch averages real pixels only (pytorch-fid's name)."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__(in_channels, channels_7x7, pool=avg_pool_same)


class FIDInceptionE_1(InceptionE):
    """Mixed_7b of the FID graph: its pool branch averages real pixels only."""

    def __init__(self, in_channels):
        super().__init__(in_channels, pool=avg_pool_same)


class FIDInceptionE_2(InceptionE):
    """Mixed_7c of the FID graph: its pool branch max-pools."""

    def __init__(self, in_channels):
        super().__init__(in_channels, pool=max_pool_same)


class InceptionNetwork(nn.Module):
    """Inception-v3 from (N, 3, 299, 299) inputs in [-1, 1] to (N, num_classes) logits.

    fid=True: the TF FID graph's pooling (padding-free averages, max pool in Mixed_7c);
    fid=False: torchvision's ImageNet model (no auxiliary classifier, no dropout: eval only).
    """

    def __init__(self, fid=True, num_classes=1008):
        super().__init__()
        if fid:
            block_a, block_c, block_e1, block_e2 = FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
        else:
            block_a, block_c, block_e1, block_e2 = InceptionA, InceptionC, InceptionE, InceptionE
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = block_a(192, 32)
        self.Mixed_5c = block_a(256, 64)
        self.Mixed_5d = block_a(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = block_c(768, 128)
        self.Mixed_6c = block_c(768, 160)
        self.Mixed_6d = block_c(768, 160)
        self.Mixed_6e = block_c(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = block_e1(1280)
        self.Mixed_7c = block_e2(2048)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        *features, fc = self.children()
        return fc(_chain(x, *features).flatten(1))


def fid_inception_v3(weights=None, random_weights=False):
    """The FID Inception-v3 (1008 classes) with its weights, in eval mode.

    weights: path of pt_inception-2015-12-05-6726825d.pth; when None it is looked up as
    ``find_fid_weights`` says, then downloaded (see ``load_fid_weights``).
    random_weights: skip the file and draw fixed random weights (testing aid: the scores
    are meaningless, but the same in every process).
    """
    with torch.random.fork_rng(devices=[]):
        net = InceptionNetwork(fid=True)
    if random_weights:
        _random_weights(net)
    else:
        state_dict, source = load_fid_weights(weights)
        load_checked(net, state_dict, source)
    return net.eval()


def imagenet_inception_v3(random_weights=False):
    """torchvision's ImageNet Inception-v3 (``use_fid_inception=False``; not comparable to published FIDs)."""
    with torch.random.fork_rng(devices=[]):
        net = InceptionNetwork(fid=False, num_classes=1000)
    if random_weights:
        return _random_weights(net).eval()
    from torchvision.models import Inception_V3_Weights  # only this path needs torchvision (slow import)

    try:
        state_dict = Inception_V3_Weights.IMAGENET1K_V1.get_state_dict(progress=True, weights_only=True)
    except (OSError, RuntimeError) as err:
        raise InceptionWeightsError(
            f"cannot get torchvision's ImageNet Inception-v3 weights ({_first_line(err)}); "
            f"use the FID network with a local {FID_WEIGHTS_NAME} instead") from err
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("AuxLogits.")}
    load_checked(net, state_dict, "torchvision's ImageNet Inception-v3")
    return net.eval()


def _random_weights(net):
    """random_init, with a warning on stderr: the scores of such a network are meaningless."""
    print("warning: random Inception weights (a testing aid): the scores are meaningless", file=sys.stderr)
    return random_init(net)


def random_init(net):
    """He-normal weights from a fixed seed, for tests without the weights file.

    PyTorch's default init shrinks the activations about 100x over the 94 layers and
    torchvision's Inception init blows them up to ~1e11; He init keeps them O(1) up to pool3,
    so features of different images differ.  Batch norms keep identity statistics.
    """
    generator = torch.Generator().manual_seed(RANDOM_WEIGHTS_SEED)
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def find_fid_weights(path=None):
    """Where the FID weights are: the explicit path, else $DDGAN_INCEPTION_WEIGHTS, else
    $FID_WEIGHTS_PATH, else the torch hub checkpoint folder.  None when none of these is set
    and the hub folder lacks the file.  A path that is named but missing is an error."""
    if path is not None:
        return _existing(path, InceptionWeightsError.FLAG)
    for var in WEIGHTS_ENV_VARS:
        if os.environ.get(var):
            return _existing(os.environ[var], f"${var}")
    cached = hub_weights_path()
    return cached if cached.is_file() else None


def hub_weights_path():
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME


def _existing(path, what):
    if Path(path).is_dir():
        raise InceptionWeightsError(f"{what} {path} is a folder: point it to the file {FID_WEIGHTS_NAME}")
    if not Path(path).is_file():
        raise InceptionWeightsError(
            f"{what} {path} does not exist: point it to {FID_WEIGHTS_NAME} (download: {FID_WEIGHTS_URL})")
    return Path(path)


def load_fid_weights(path=None):
    """(state_dict, source) from ``find_fid_weights``, else downloaded into the hub folder,
    unless $DDGAN_NO_DOWNLOAD is set or the machine is offline: then a one-line error."""
    found = find_fid_weights(path)
    if found is not None:
        return _read(found), str(found)
    if not downloads_allowed():
        raise _not_found(f"${NO_DOWNLOAD_ENV_VAR} is set")
    try:
        state_dict = torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, map_location="cpu",
                                                        weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise _not_found(f"download failed: {_first_line(err)}") from err
    return state_dict, FID_WEIGHTS_URL


def _not_found(reason):
    return InceptionWeightsError(
        f"Inception weights {FID_WEIGHTS_NAME} not found and not downloaded ({reason}): "
        f"pass {InceptionWeightsError.FLAG} PATH, set {WEIGHTS_ENV_VARS[0]}=PATH, or put the file in "
        f"{hub_weights_path().parent}/ (download: {FID_WEIGHTS_URL})")


def _read(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on corrupt files (pickle, zip, EOF, ...)
        raise InceptionWeightsError(
            f"cannot read Inception weights {path} ({type(err).__name__}: {_first_line(err)}); "
            f"download {FID_WEIGHTS_NAME} again from {FID_WEIGHTS_URL}") from err


def load_checked(net, state_dict, source):
    """Load ``state_dict`` into ``net``, with a one-line error if it is not the FID weights.

    Batch-norm step counters (num_batches_tracked) may be absent, as in files saved by old
    PyTorch versions; every weight and running statistic must be there with its shape.
    """
    if not isinstance(state_dict, dict):
        raise InceptionWeightsError(f"{source} holds a {type(state_dict).__name__}, not a state dict: "
                                    f"use {FID_WEIGHTS_NAME}")
    expected = net.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    wrong = [k for k, v in expected.items() if getattr(state_dict.get(k), "shape", None) != v.shape
             and k not in optional]
    extra = state_dict.keys() - expected.keys()
    if wrong or extra:
        raise InceptionWeightsError(
            f"{source} is not the FID Inception-v3 weights ({len(wrong)} tensors missing or misshapen, "
            f"{len(extra)} unexpected, e.g. {(wrong + sorted(extra))[0]}): use {FID_WEIGHTS_NAME}")
    net.load_state_dict(state_dict, strict=False)


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class InceptionV3(nn.Module):
    """pytorch-fid's feature extractor: the Inception-v3 split into four blocks.

    forward((N, 3, H, W) images in [0, 1]) returns the outputs of the blocks listed in
    output_blocks, in order: (N, 64, h, w), (N, 192, h, w), (N, 768, 17, 17) and the pool3
    features (N, 2048, 1, 1) (sizes for 299x299 inputs).  ``features_and_logits`` gives
    pool3 and the classifier logits in one pass (FID and Inception Score together).
    weights / random_weights: see ``fid_inception_v3``.
    """

    DEFAULT_BLOCK_INDEX = 3
    BLOCK_INDEX_BY_DIM = {64: 0, 192: 1, 768: 2, 2048: 3}

    def __init__(self, output_blocks=(DEFAULT_BLOCK_INDEX,), resize_input=True, normalize_input=True,
                 requires_grad=False, use_fid_inception=True, weights=None, random_weights=False):
        super().__init__()
        self.output_blocks = sorted(output_blocks)
        if not self.output_blocks or not set(self.output_blocks) <= set(range(len(_BLOCKS))):
            raise ValueError(f"output_blocks must be indices in 0..{len(_BLOCKS) - 1}, got {output_blocks}")
        self.resize_input = resize_input
        self.normalize_input = normalize_input
        if use_fid_inception:
            net = fid_inception_v3(weights, random_weights)
        else:
            net = imagenet_inception_v3(random_weights)
        self.blocks = nn.ModuleList(nn.Sequential(*(getattr(net, name) for name in names))
                                    for names in _BLOCKS)
        self.fc = net.fc
        self.requires_grad_(requires_grad)
        self.eval()

    def _prepare(self, x):
        if self.resize_input:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2 * x - 1 if self.normalize_input else x

    def forward(self, inp):
        x = self._prepare(inp)
        outputs = []
        for index, block in enumerate(self.blocks[: self.output_blocks[-1] + 1]):
            x = block(x)
            if index in self.output_blocks:
                outputs.append(x)
        return outputs

    def features_and_logits(self, inp):
        """(pool3 (N, 2048), logits (N, 1008)) in one pass; the IS softmax uses logits[:, :1000]."""
        x = self._prepare(inp)
        for block in self.blocks:
            x = block(x)
        features = x.flatten(1)
        return features, self.fc(features)


def pooled(features):
    """(B, C, h, w) -> (B, C), averaging space when the block is not already pooled (pytorch-fid's --dims)."""
    if features.shape[2:] != (1, 1):
        features = F.adaptive_avg_pool2d(features, (1, 1))
    return features.flatten(1)


_NETWORKS = {}


def shared_inception(device, weights=None, random_weights=False, dims=2048):
    """The FID Inception-v3 on ``device`` whose output block has ``dims`` channels (2048: pool3, whose
    ``features_and_logits`` also gives the logits), built once per process per weights file: the one
    place the evaluation builds it."""
    if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
        raise ValueError(f"dims must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}")
    key = ("random" if random_weights else str(find_fid_weights(weights)), str(torch.device(device)), dims)
    if key not in _NETWORKS:
        network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]], weights=weights, random_weights=random_weights)
        _NETWORKS[key] = network.to(device)
    return _NETWORKS[key]
