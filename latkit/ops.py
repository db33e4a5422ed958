"""Op specs: the unit that is profiled, predicted and searched over.

An `OpSpec` is plain, hashable data. It round-trips exactly to and from the two key dialects that
published latency tables use (ProxylessNAS and once-for-all), so measurements made by latkit and by
others land in the same table.

What neither dialect can say is appended as latkit's own `-name:value` tags, only when it differs
from the default, so every published key renders byte-identically:

- `-groups:G`: grouped 1x1 convs;
- activations other than a dialect's default: `-hs:1` (h-swish), `-relu:1`, `-relu6:1` and
  `-swish:1` (x * sigmoid(x), MnasNet/EfficientNet); once-for-all blocks always spell `-hs:`, so
  there a swish block ends `-hs:0-swish:1`, as a ReLU6 one ends `-hs:0-relu6:1`;
- `-sestyle:effnet` right after `-se:1`: MnasNet/EfficientNet's squeeze-excite (bottleneck from the
  block's input channels, the block's activation, sigmoid gate) instead of MobileNetV3's.

An EfficientNet-B0 block is thus
`expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1-se:1-sestyle:effnet-swish:1`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from latkit.errors import LatkitError

OP_TYPES: tuple[str, ...] = ("mbconv", "zero", "conv", "linear", "pool", "irf")
ACTS: tuple[str, ...] = ("relu6", "hswish", "relu", "swish")
#: squeeze-excite variants: MobileNetV3's (once-for-all) and MnasNet/EfficientNet's
SE_STYLES: tuple[str, ...] = ("mbv3", "effnet")
#: op types that are inverted-residual blocks (expand, depthwise, [SE], project, [skip])
BLOCK_TYPES: frozenset[str] = frozenset({"mbconv", "irf"})
DIALECTS: tuple[str, ...] = ("proxylessnas", "ofa")
#: the largest input size (H and W) latkit predicts a network at or builds one with
MAX_RESOLUTION = 4_096


class KeyError_(LatkitError):
    """A latency-table key that does not follow either dialect."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels the way MobileNet-family code does, never dropping more than 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class OpSpec:
    """One op at one position shape. `expand` is the ratio: mid channels = round(cin * expand).

    Types: `mbconv` is the MobileNetV2/V3 block (no expansion conv at ratio 1, as ProxylessNAS
    and once-for-all build it); `irf` is FBNet's block, which keeps the 1x1 expansion conv at
    ratio 1 and shuffles the channels after it when its 1x1 convs are grouped; `conv` is a conv
    with batch norm and activation (stems, heads, and FBNet's shortcut where the shape changes);
    `zero` is ProxylessNAS's zero op, the identity with `skip`; `linear` pools and classifies;
    `pool` is a global average pool.

    `se_style` picks the squeeze-excite of a block with `se`: `mbv3` reduces `mid` to
    `se_channels(mid)` with ReLU and gates with a hard sigmoid; `effnet` reduces to a quarter of the
    block's `cin` with the block's `act` and gates with a sigmoid.
    """

    type: str
    input_hw: int
    cin: int
    cout: int
    stride: int = 1
    kernel: int = 1
    expand: float = 1.0
    groups: int = 1
    se: bool = False
    act: str = "relu6"
    skip: bool = False
    batch: int = 1
    se_style: str = "mbv3"

    def __post_init__(self) -> None:
        if self.type not in OP_TYPES:
            raise LatkitError(f"op type {self.type!r} is not one of {', '.join(OP_TYPES)}")
        if self.act not in ACTS:
            raise LatkitError(f"op act {self.act!r} is not one of {', '.join(ACTS)}")
        if self.se_style not in SE_STYLES:
            raise LatkitError(f"op se_style {self.se_style!r} is not one of {', '.join(SE_STYLES)}")
        if self.se_style != "mbv3" and not (self.se and self.type in BLOCK_TYPES):
            raise LatkitError(f"op se_style {self.se_style!r} needs a block type with se=True")
        for name in ("input_hw", "cin", "cout", "stride", "kernel", "groups", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LatkitError(f"op field {name} must be a positive integer, got {value!r}")
        if self.kernel % 2 == 0:
            raise LatkitError(
                f"op kernel must be odd (padding k//2 keeps the size), got {self.kernel}"
            )
        if not self.expand > 0:
            raise LatkitError(f"op field expand must be positive, got {self.expand!r}")
        if self.type in BLOCK_TYPES and (
            self.mid % self.groups
            or self.cout % self.groups
            or (self.has_expand_conv and self.cin % self.groups)
        ):
            raise LatkitError(
                f"op groups={self.groups} must divide cin={self.cin} (when expanding), "
                f"mid={self.mid} and cout={self.cout}"
            )
        if self.skip and (self.stride != 1 or self.cin != self.cout):
            raise LatkitError("an identity skip needs stride 1 and cin == cout")

    @property
    def mid(self) -> int:
        """Channels after the 1x1 expansion."""
        return int(round(self.cin * self.expand))

    @property
    def se_reduced(self) -> int:
        """Channels of the squeeze-excite bottleneck, as each style's reference code sizes it."""
        if self.se_style == "effnet":
            return max(1, int(self.cin * 0.25))
        return se_channels(self.mid)

    @property
    def has_expand_conv(self) -> bool:
        """Whether the block starts with a 1x1 expansion conv (FBNet's keeps it at ratio 1)."""
        return self.type == "irf" or (self.type == "mbconv" and self.expand != 1)

    @property
    def shuffle(self) -> bool:
        """FBNet's channel shuffle between a grouped expansion and the depthwise conv."""
        return self.type == "irf" and self.groups > 1

    @property
    def output_hw(self) -> int:
        if self.type == "linear" or self.type == "pool":
            return 1
        return -(-self.input_hw // self.stride)

    def replace(self, **changes: Any) -> OpSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpSpec:
        """Build from a plain dict, e.g. a CSV row or a JSON line; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise LatkitError(f"unknown op field(s): {', '.join(sorted(unknown))}")
        coerced: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                continue
            value = data[field.name]
            if field.type == "int":
                value = _as_int(field.name, value)
            elif field.type == "float":
                value = float(value)
            elif field.type == "bool":
                value = _as_bool(field.name, value)
            coerced[field.name] = value
        return cls(**coerced)

    # --- cost features, used by predictors ---------------------------------------------------

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one batch-1 forward pass."""
        h_in, h_out = self.input_hw, self.output_hw
        if self.type in BLOCK_TYPES:
            macs = 0
            if self.has_expand_conv:
                macs += h_in * h_in * self.cin * self.mid // self.groups
            macs += h_out * h_out * self.mid * self.kernel * self.kernel
            if self.se:
                macs += 2 * self.mid * self.se_reduced
            macs += h_out * h_out * self.mid * self.cout // self.groups
            return macs
        if self.type == "conv":
            return h_out * h_out * self.cin * self.cout * self.kernel * self.kernel
        if self.type == "linear":
            return self.cin * self.cout
        return 0

    @property
    def params(self) -> int:
        """Weights, with batch norm counted as scale and shift (it folds into the convs)."""
        if self.type in BLOCK_TYPES:
            params = 0
            if self.has_expand_conv:
                params += self.cin * self.mid // self.groups + 2 * self.mid
            params += self.mid * self.kernel * self.kernel + 2 * self.mid
            if self.se:
                red = self.se_reduced
                params += 2 * self.mid * red + red + self.mid
            params += self.mid * self.cout // self.groups + 2 * self.cout
            return params
        if self.type == "conv":
            return self.cin * self.cout * self.kernel * self.kernel + 2 * self.cout
        if self.type == "linear":
            return self.cin * self.cout + self.cout
        return 0

    @property
    def activation_bytes(self) -> int:
        """Float32 bytes read and written between layers (inputs, intermediates, outputs)."""
        h_in, h_out = self.input_hw, self.output_hw
        elems = h_in * h_in * self.cin + h_out * h_out * self.cout
        if self.type in BLOCK_TYPES:
            if self.has_expand_conv:
                elems += h_in * h_in * self.mid
            if self.shuffle:
                elems += h_in * h_in * self.mid
            elems += h_out * h_out * self.mid
            if self.se:  # pooled, bottleneck and gate vectors, then the rescaled map
                elems += 2 * self.mid + self.se_reduced + h_out * h_out * self.mid
        return 4 * self.batch * elems

    # --- keys -----------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The ProxylessNAS-dialect key: the canonical name of this op everywhere in latkit."""
        return to_key(self, "proxylessnas")


def se_channels(mid: int) -> int:
    """Squeeze-excite bottleneck width, as in once-for-all (mid / 4, divisible by 8)."""
    return make_divisible(mid // 4, 8)


def shuffle_order(channels: int, groups: int) -> list[int]:
    """ShuffleNet's channel shuffle as the fixed permutation it is: channel i of group k moves to
    i * groups + k. One definition for the module that gathers by it (`latkit.modules`) and the
    ONNX mapping that recognises that gather (`latkit.graph_patterns`), so they cannot drift."""
    per_group = channels // groups
    return [k * per_group + i for i in range(per_group) for k in range(groups)]


#: the op spec's field names, in order: the columns of every table of ops
OP_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(OpSpec))


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise LatkitError(f"op field {name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise LatkitError(f"op field {name} must be an integer, got {value!r}")


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "1.0"):
        return True
    if text in ("0", "false", "no", "0.0", ""):
        return False
    raise LatkitError(f"op field {name} must be true/false or 1/0, got {value!r}")


# --- key dialects ------------------------------------------------------------------------------

_SHAPE = r"(\d+)x(\d+)x(\d+)"
_TAGS = r"(?P<rest>(?:-[a-z][a-z0-9_]*:[0-9a-z.]+)*)"
#: block key names: ProxylessNAS's and once-for-all's `expanded_conv`, and FBNet's block
_BLOCK_NAMES = {"mbconv": "expanded_conv", "irf": "IRFBlock"}
_MBCONV = re.compile(
    rf"^(?P<name>expanded_conv|IRFBlock)-input:{_SHAPE}-output:{_SHAPE}-expand:([0-9.]+)"
    rf"-kernel:(\d+)-stride:(\d+)-idskip:([01]){_TAGS}$"
)
_CONV = re.compile(rf"^(Conv(?:_\d+)?)-input:{_SHAPE}-output:{_SHAPE}{_TAGS}$")
_LOGITS = re.compile(rf"^Logits-input:{_SHAPE}-output:(\d+)$")
_POOL = re.compile(rf"^AvgPool2D-input:{_SHAPE}-output:{_SHAPE}$")
_ZERO = re.compile(rf"^Zero-input:{_SHAPE}-output:{_SHAPE}(-idskip:1)?$")
#: the activation each dialect leaves unsaid: ProxylessNAS runs ReLU6 everywhere; once-for-all
#: spells `hs:` on every block (hs:0 is ReLU in its MobileNetV3) and runs its convs in h-swish
#: (its conv keys never said more, so a ReLU6 conv renders there as published tables do)
_ACT_TAGS: dict[str, dict[str, dict[str, str]]] = {
    "proxylessnas": {
        "block": {"relu6": "", "hswish": "-hs:1", "relu": "-relu:1", "swish": "-swish:1"},
        "conv": {"relu6": "", "hswish": "-hs:1", "relu": "-relu:1", "swish": "-swish:1"},
    },
    "ofa": {
        "block": {
            "relu": "-hs:0",
            "hswish": "-hs:1",
            "relu6": "-hs:0-relu6:1",
            "swish": "-hs:0-swish:1",
        },
        "conv": {"hswish": "", "relu6": "", "relu": "-relu:1", "swish": "-swish:1"},
    },
}
_ACT_FIELDS = ("hs", "relu", "relu6", "swish")


def _fmt_ratio(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _conv_name(spec: OpSpec) -> str:
    """Table names of convs: `Conv` is the stem, `Conv_1` the feature mix, `Conv_2` the 1x1 head."""
    if spec.kernel != 1:
        return "Conv"
    return "Conv_2" if spec.input_hw == 1 else "Conv_1"


def _tags(text: str) -> dict[str, str]:
    return dict(part.split(":") for part in text.split("-")[1:])


def _act_of(tags: dict[str, str], dialect: str, kind: str) -> str:
    """The activation a key's tags spell in `dialect` (the inverse of `_ACT_TAGS`)."""
    spelled = "".join(f"-{k}:{tags[k]}" for k in _ACT_FIELDS if k in tags)
    for act, tag in _ACT_TAGS[dialect][kind].items():
        if tag == spelled:
            return act
    raise KeyError_(f"activation tags {spelled!r} are not a {dialect} {kind} activation")


def to_key(spec: OpSpec, dialect: str = "proxylessnas") -> str:
    """Render `spec` in a dialect. Fields a dialect cannot hold are appended only when non-default,
    so published keys stay byte-identical and latkit's own keys stay unambiguous."""
    if dialect not in DIALECTS:
        raise LatkitError(f"key dialect {dialect!r} is not one of {', '.join(DIALECTS)}")
    hi, ho = spec.input_hw, spec.output_hw
    io = f"input:{hi}x{hi}x{spec.cin}-output:{ho}x{ho}x{spec.cout}"
    if spec.type == "conv":
        return f"{_conv_name(spec)}-{io}{_ACT_TAGS[dialect]['conv'][spec.act]}"
    if spec.type == "linear":
        return f"Logits-input:{hi}x{hi}x{spec.cin}-output:{spec.cout}"
    if spec.type == "pool":
        return f"AvgPool2D-{io}"
    if spec.type == "zero":
        return f"Zero-{io}" + ("-idskip:1" if spec.skip else "")
    expand = str(spec.mid) if dialect == "ofa" else _fmt_ratio(spec.expand)
    key = (
        f"{_BLOCK_NAMES[spec.type]}-{io}-expand:{expand}-kernel:{spec.kernel}"
        f"-stride:{spec.stride}-idskip:{int(spec.skip)}"
    )
    if dialect == "ofa" or spec.se:
        key += f"-se:{int(spec.se)}"
    if spec.se_style != "mbv3":
        key += f"-sestyle:{spec.se_style}"
    key += _ACT_TAGS[dialect]["block"][spec.act]
    if spec.groups != 1:
        key += f"-groups:{spec.groups}"
    return key


def detect_dialect(key: str) -> str:
    """`ofa` when a block key carries se/hs fields and an expand that is a channel count."""
    match = _MBCONV.match(key)
    if match and "-se:" in match["rest"] and "-hs:" in match["rest"]:
        if "-se:0" in match["rest"] or "-hs:0" in match["rest"]:
            return "ofa"
        cin, mid = int(match[4]), float(match[8])
        if mid >= cin and mid.is_integer():
            return "ofa"
    return "proxylessnas"


def from_key(key: str, dialect: str | None = None, batch: int = 1) -> OpSpec:
    """Parse a table key. `dialect=None` detects it; the result re-renders to the same string."""
    dialect = dialect or detect_dialect(key)
    if dialect not in DIALECTS:
        raise LatkitError(f"key dialect {dialect!r} is not one of {', '.join(DIALECTS)}")
    try:
        return _parse_key(key, dialect, batch)
    except (ZeroDivisionError, OverflowError):  # a size of 0, or one no float holds
        raise KeyError_(f"key {key!r}: its sizes must be positive and finite") from None


def _parse_key(key: str, dialect: str, batch: int) -> OpSpec:
    if match := _MBCONV.match(key):
        hi, _, cin, ho, _, cout = (int(match[i]) for i in range(2, 8))
        expand_text, kernel, stride, skip = (
            match[8],
            int(match[9]),
            int(match[10]),
            match[11] == "1",
        )
        extras = _tags(match["rest"])
        unknown = set(extras) - {"se", "sestyle", "groups", *_ACT_FIELDS}
        if unknown:
            raise KeyError_(f"key {key!r} has unknown field(s) {', '.join(sorted(unknown))}")
        expand = float(expand_text) / cin if dialect == "ofa" else float(expand_text)
        spec = OpSpec(
            "irf" if match["name"] == "IRFBlock" else "mbconv",
            hi,
            cin,
            cout,
            stride=stride,
            kernel=kernel,
            expand=expand,
            groups=int(extras.get("groups", 1)),
            se=extras.get("se") == "1",
            act=_act_of(extras, dialect, "block"),
            skip=skip,
            batch=batch,
            se_style=extras.get("sestyle", "mbv3"),
        )
        _check_shape(key, spec, ho)
    elif match := _CONV.match(key):
        name = match[1]
        hi, cin, ho, cout = int(match[2]), int(match[4]), int(match[5]), int(match[7])
        extras = _tags(match["rest"])
        if set(extras) - set(_ACT_FIELDS):
            raise KeyError_(f"key {key!r} has unknown field(s) {', '.join(sorted(extras))}")
        spec = OpSpec(
            "conv",
            hi,
            cin,
            cout,
            stride=max(1, round(hi / ho)),
            kernel=3 if name == "Conv" else 1,
            batch=batch,
            act=_act_of(extras, dialect, "conv"),
        )
        _check_shape(key, spec, ho)
    elif match := _LOGITS.match(key):
        spec = OpSpec("linear", int(match[1]), int(match[3]), int(match[4]), batch=batch)
    elif match := _POOL.match(key):
        spec = OpSpec("pool", int(match[1]), int(match[3]), int(match[6]), batch=batch)
    elif match := _ZERO.match(key):
        hi, cin, ho, cout = int(match[1]), int(match[3]), int(match[4]), int(match[6])
        spec = OpSpec(
            "zero",
            hi,
            cin,
            cout,
            stride=max(1, round(hi / ho)),
            skip=match[7] is not None,
            batch=batch,
        )
        _check_shape(key, spec, ho)
    else:
        raise KeyError_(f"key {key!r} is not a ProxylessNAS or once-for-all latency-table key")
    if to_key(spec, dialect) != key:
        raise KeyError_(
            f"key {key!r} does not round-trip (it re-renders as {to_key(spec, dialect)!r})"
        )
    return spec


def _check_shape(key: str, spec: OpSpec, output_hw: int) -> None:
    if spec.output_hw != output_hw:
        raise KeyError_(
            f"key {key!r}: stride {spec.stride} does not map {spec.input_hw} to {output_hw}"
        )
