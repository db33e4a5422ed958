"""Five MBConv-family ImageNet networks in plain torch, each written from its paper's layer table.

They are what `latkit predict --onnx` is checked on (bench/onnx_networks.py) and what
tests/test_paper_networks.py checks against the papers' parameter and MAC counts. torchvision
and timm do not load here, and their versions differ from the papers in details (MnasNet-B1 for
MnasNet, padding, SE widths), so each network is built from its table. One copy serves both:
bench/ imports this file.

Conventions, the same in all five (the ONNX mapper maps them exactly): a conv pads k//2, has no
bias and is followed by BatchNorm2d, except the SE convs (bias) and the classifier; a depthwise
conv has groups = channels; a block adds its input when stride is 1 and its width stays; a block
whose expansion ratio is 1 has no 1x1 expansion conv, except FBNet's, which always keeps it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from latkit.modules import randomize_bn

Act = Callable[[], nn.Module]
INPUT_SHAPE = (1, 3, 224, 224)
OPSET = 17


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: to a multiple of `divisor`, never more than 10% down."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def conv_bn(cin: int, cout: int, kernel: int, stride: int, act: Act | None, groups: int = 1):
    """Conv (no bias), batch norm and an optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Mean over the map, 1x1 reduce (bias), activation, 1x1 expand (bias), gate, scale."""

    def __init__(self, channels: int, reduced: int, act: Act, gate: Act) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = act()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


#: (channels of the block's input, mid channels) -> an SE module, or None for no SE
SE = Callable[[int, int], nn.Module]


def mbv3_se(cin: int, mid: int) -> nn.Module:
    """MobileNetV3's SE: mid/4 rounded to 8, ReLU, hard sigmoid."""
    return SqueezeExcite(mid, make_divisible(mid / 4, 8), nn.ReLU, nn.Hardsigmoid)


def block_se(act: Act) -> SE:
    """MnasNet's and EfficientNet's SE: a quarter of the block's input, the block's activation,
    sigmoid."""
    return lambda cin, mid: SqueezeExcite(mid, max(1, int(cin * 0.25)), act, nn.Sigmoid)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand], depthwise kxk, [SE], 1x1 project, [identity skip]."""

    def __init__(
        self,
        cin: int,
        mid: int,
        cout: int,
        kernel: int,
        stride: int,
        act: Act,
        se: SE | None = None,
        keep_expand: bool = False,
    ) -> None:
        super().__init__()
        self.expand = conv_bn(cin, mid, 1, 1, act) if keep_expand or mid != cin else None
        self.depthwise = conv_bn(mid, mid, kernel, stride, act, groups=mid)
        self.se = se(cin, mid) if se is not None else None
        self.project = conv_bn(mid, cout, 1, 1, None)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.skip else out


@dataclass(frozen=True)
class Stage:
    """Rows of a layer table: `n` blocks of kernel `k`, expansion ratio `e` (or mid channels
    `mid`), `c` output channels, stride `s` on the first; `skip` is FBNet's identity block."""

    k: int
    c: int
    n: int = 1
    s: int = 1
    e: float = 1
    mid: int | None = None
    se: bool = False
    act: Act | None = None
    skip: bool = False


def blocks(
    cin: int, stages: Sequence[Stage], act: Act, se: SE | None, keep_expand: bool = False
) -> tuple[list[nn.Module], int]:
    """The blocks of a layer table from `cin` channels, and the channels they end with."""
    out: list[nn.Module] = []
    for st in stages:
        for i in range(st.n):
            stride = st.s if i == 0 else 1
            if st.skip:
                out.append(nn.Identity())
                continue
            mid = st.mid if st.mid is not None else round(cin * st.e)
            block_se = se if st.se else None
            out.append(MBConv(cin, mid, st.c, st.k, stride, st.act or act, block_se, keep_expand))
            cin = st.c
    return out, cin


def network(
    stem: int,
    stem_act: Act,
    stages: Sequence[Stage],
    act: Act,
    head: int,
    head_act: Act,
    se: SE | None = None,
    keep_expand: bool = False,
    classifier: Sequence[nn.Module] | None = None,
) -> nn.Sequential:
    """Stem 3x3 conv stride 2, the blocks, 1x1 conv to `head`, pool, flatten, classifier
    (Linear(head, 1000) unless given)."""
    body, channels = blocks(stem, stages, act, se, keep_expand)
    return nn.Sequential(
        conv_bn(3, stem, 3, 2, stem_act),
        *body,
        conv_bn(channels, head, 1, 1, head_act),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        *(classifier or [nn.Linear(head, 1000)]),
    )


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 1.0: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", CVPR 2018, Table 2 (t, c, n, s); ReLU6; 3.4M params, 300M MACs (Table 4)."""
    stages = [
        Stage(3, 16, 1, 1, e=1),
        Stage(3, 24, 2, 2, e=6),
        Stage(3, 32, 3, 2, e=6),
        Stage(3, 64, 4, 2, e=6),
        Stage(3, 96, 3, 1, e=6),
        Stage(3, 160, 3, 2, e=6),
        Stage(3, 320, 1, 1, e=6),
    ]
    return network(32, nn.ReLU6, stages, nn.ReLU6, 1280, nn.ReLU6)


def mnasnet_a1() -> nn.Module:
    """MnasNet-A1: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile",
    CVPR 2019, Figure 7(a); ReLU; SE of a quarter of the block's input (its code's se_ratio
    0.25); the head's 1x1 conv to 1280 as in its code; 3.9M params, 312M MACs (Table 1)."""
    stages = [
        Stage(3, 16, 1, 1, e=1),  # SepConv (k3x3)
        Stage(3, 24, 2, 2, e=6),
        Stage(5, 40, 3, 2, e=3, se=True),
        Stage(3, 80, 4, 2, e=6),
        Stage(3, 112, 2, 1, e=6, se=True),
        Stage(5, 160, 3, 2, e=6, se=True),
        Stage(3, 320, 1, 1, e=6),
    ]
    return network(32, nn.ReLU, stages, nn.ReLU, 1280, nn.ReLU, se=block_se(nn.ReLU))


def fbnet_c() -> nn.Module:
    """FBNet-C: Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable
    Neural Architecture Search", CVPR 2019, Table 1 (macro-architecture) and Figure 4 (FBNet-C's
    blocks; the same as `fbnet_c` in its authors' model definitions); ReLU; every block keeps
    its 1x1 expansion conv, also at e1; 5.5M params, 375M MACs (Table 2)."""
    stages = [
        Stage(3, 16, 1, 1, e=1),
        Stage(3, 24, 1, 2, e=6),
        Stage(3, 24, skip=True),
        Stage(3, 24, 2, 1, e=1),
        Stage(5, 32, 1, 2, e=6),
        Stage(5, 32, 1, 1, e=3),
        Stage(5, 32, 1, 1, e=6),
        Stage(3, 32, 1, 1, e=6),
        Stage(5, 64, 1, 2, e=6),
        Stage(5, 64, 1, 1, e=3),
        Stage(5, 64, 2, 1, e=6),
        Stage(5, 112, 3, 1, e=6),
        Stage(5, 112, 1, 1, e=3),
        Stage(5, 184, 4, 2, e=6),
        Stage(3, 352, 1, 1, e=6),
    ]
    return network(16, nn.ReLU, stages, nn.ReLU, 1984, nn.ReLU, keep_expand=True)


def mobilenet_v3_large() -> nn.Module:
    """MobileNetV3-Large: Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 1 (exp
    size is the mid channel count; RE = ReLU, HS = h-swish; SE with a hard sigmoid); head 1x1
    conv to 960, pool, 1x1 convs without BN to 1280 (h-swish) and 1000, as linears; 5.4M
    params, 219M MACs (Table 3)."""
    re, hs = nn.ReLU, nn.Hardswish
    stages = [
        Stage(3, 16, mid=16, act=re),
        Stage(3, 24, s=2, mid=64, act=re),
        Stage(3, 24, mid=72, act=re),
        Stage(5, 40, s=2, mid=72, se=True, act=re),
        Stage(5, 40, mid=120, se=True, act=re),
        Stage(5, 40, mid=120, se=True, act=re),
        Stage(3, 80, s=2, mid=240, act=hs),
        Stage(3, 80, mid=200, act=hs),
        Stage(3, 80, mid=184, act=hs),
        Stage(3, 80, mid=184, act=hs),
        Stage(3, 112, mid=480, se=True, act=hs),
        Stage(3, 112, mid=672, se=True, act=hs),
        Stage(5, 160, s=2, mid=672, se=True, act=hs),
        Stage(5, 160, mid=960, se=True, act=hs),
        Stage(5, 160, mid=960, se=True, act=hs),
    ]
    classifier = [nn.Linear(960, 1280), nn.Hardswish(), nn.Linear(1280, 1000)]
    return network(16, hs, stages, re, 960, hs, se=mbv3_se, classifier=classifier)


def efficientnet_b0() -> nn.Module:
    """EfficientNet-B0: Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional
    Neural Networks", ICML 2019, Table 1 (strides from its resolutions); swish (SiLU); SE of a
    quarter of the block's input in every block (its code's se_ratio 0.25); 5.3M params, 0.39B
    FLOPs (Table 2)."""
    stages = [
        Stage(3, 16, 1, 1, e=1, se=True),
        Stage(3, 24, 2, 2, e=6, se=True),
        Stage(5, 40, 2, 2, e=6, se=True),
        Stage(3, 80, 3, 2, e=6, se=True),
        Stage(5, 112, 3, 1, e=6, se=True),
        Stage(5, 192, 4, 2, e=6, se=True),
        Stage(3, 320, 1, 1, e=6, se=True),
    ]
    return network(32, nn.SiLU, stages, nn.SiLU, 1280, nn.SiLU, se=block_se(nn.SiLU))


def paper_networks() -> dict[str, Callable[[], nn.Module]]:
    """Each network's builder by name."""
    return {
        "mobilenet_v2": mobilenet_v2,
        "mnasnet_a1": mnasnet_a1,
        "fbnet_c": fbnet_c,
        "mobilenet_v3_large": mobilenet_v3_large,
        "efficientnet_b0": efficientnet_b0,
    }


def deployed_params(model: nn.Module) -> int:
    """Parameters of the inference graph: each batch norm folds into its conv, its scale into
    the weights and its shift into a bias. It is what the ONNX file holds, and what TF-slim
    counts (its batch norm has a shift and no scale by default); counting the scale too puts
    MobileNetV2 at 3.50M, 3.1% over its paper's 3.4M."""
    bn = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return sum(p.numel() for p in model.parameters()) - bn


def count_macs(model: nn.Module, shape: Sequence[int] = INPUT_SHAPE) -> int:
    """Multiply-accumulates of the convs and linears in one forward pass, as the papers count
    them (batch norm, activations, SE scaling and pooling left out)."""
    macs = 0

    def conv(module: nn.Conv2d, _: object, output: torch.Tensor) -> None:
        nonlocal macs
        k = math.prod(module.kernel_size)
        macs += output[0].numel() * module.in_channels // module.groups * k

    def linear(module: nn.Linear, _: object, output: torch.Tensor) -> None:
        nonlocal macs
        macs += module.in_features * module.out_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(*shape))
    finally:
        for hook in hooks:
            hook.remove()
    return macs


def _with_bn_statistics(model: nn.Module, seed: int) -> nn.Module:
    """Seeded batch-norm statistics, as a trained network has: fresh ones fold into identical
    conv biases, which the exporter shares through Identity nodes no trained network has."""
    randomize_bn(model, torch.Generator().manual_seed(seed))
    return model


def export(name: str, path: str | Path, seed: int = 0) -> Path:
    """The network `name` in eval mode, with seeded weights, as an ONNX file (opset 17, input
    1x3x224x224)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _with_bn_statistics(paper_networks()[name](), seed).eval()
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model,
            (torch.randn(*INPUT_SHAPE),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
        )
    return path
