"""The patterns `latkit.graphs.map_onnx` finds in an ONNX graph, and the walk that tries them.

`walk` goes from the graph's input to its output and, at each tensor, tries `MATCHERS` in order:

- an inverted-residual block: [1x1 expand conv + act [channel shuffle]] -> depthwise kxk conv +
  act -> [squeeze-excite] -> 1x1 project conv (no act) -> [Add of the block's input]; `irf` when
  the expansion conv keeps the width (FBNet's ratio-1 blocks) or shuffles, else `mbconv`;
- a conv and its activation (stems, heads; at 1x1 spatial, MobileNetV3-style head convs);
- a global average pool (GlobalAveragePool, or ReduceMean over H and W): with a classifier
  without activation right after it (Flatten/Reshape, Gemm or MatMul + Add) it is one `linear`
  op at the pooled size, since latkit's linear pools and classifies; otherwise a `pool` op;
- a dense layer on 1x1 features: with an activation it is a 1x1 `conv` op at input size 1
  (MobileNetV3's 960 -> 1280), without one a `linear` op at input size 1 (flatten, classify);
- Identity and Dropout, which compute nothing.

Activations are a registry too (`UNARY_ACTS`, `GATED_ACTS`): Relu, Clip(0, 6) (relu6), HardSwish
and x * HardSigmoid(x) (hswish), x * Sigmoid(x) (swish). Squeeze-excite is MobileNetV3's (`mbv3`:
ReLU, hard sigmoid, mid/4 rounded to 8) or MnasNet/EfficientNet's (`effnet`: the block's act,
sigmoid, a quarter of the block's input). A channel shuffle is latkit's own: a Gather of the
fixed permutation.

A pattern is matched loosely by its structure, then checked strictly: it becomes an op spec only
when the spec describes it exactly (shapes, stride, k//2 padding on every side, dilation 1,
groups, activation, SE style and width), and otherwise every node of it is refused with the
reason. A conv's weight must take as many channels as its input has: ONNX's shape inference does
not check that, so an input shape with the wrong C would map to convs the graph does not have. A
pattern one of whose inner tensors is read elsewhere is refused too. Conv biases are not
checked: folding batch norm gives every conv one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from latkit.errors import LatkitError
from latkit.ops import ACTS, OpSpec, shuffle_order

#: ONNX ops that compute nothing in inference
PASSTHROUGH = frozenset({"Identity", "Dropout"})
#: ONNX ops that turn pooled (N, C, 1, 1) features into (N, C)
FLATTEN = frozenset({"Flatten", "Reshape", "Squeeze"})
#: elementwise activations latkit's ops do not have: matched so the op they follow is refused
#: with its reason, instead of being taken for an op without activation
FOREIGN_ACTS = frozenset(
    {"LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Mish", "PRelu", "Softplus", "Softsign", "Tanh"}
    | {"ThresholdedRelu", "Sigmoid", "HardSigmoid"}
)


# --- the graph, indexed for walking --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Node:
    """One ONNX node (hashed by identity: one `Node` per node of the graph)."""

    index: int
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        return self.name or f"#{self.index}"

    @property
    def out(self) -> str:
        return self.outputs[0]


def _node(index: int, proto: onnx.NodeProto) -> Node:
    attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    return Node(index, proto.op_type, proto.name, tuple(proto.input), tuple(proto.output), attrs)


class Graph:
    """An ONNX graph with inferred shapes: who reads each tensor, each tensor's static shape,
    the constant tensors' values, and the nodes that only carry constants (Constant, Identity of
    a constant), which compute nothing."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.nodes = [_node(i, proto) for i, proto in enumerate(graph.node)]
        self.input = next(i.name for i in graph.input if i.name not in _names(graph.initializer))
        self.outputs = frozenset(o.name for o in graph.output)
        self.consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.shapes = {name: tuple(v.shape) for name, v in self.consts.items()}
        for info in (*graph.input, *graph.value_info, *graph.output):
            dims = info.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                self.shapes[info.name] = tuple(d.dim_value for d in dims)
        self.readers: dict[str, list[Node]] = defaultdict(list)
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    self.readers[name].append(node)
        self.plumbing = frozenset(n for n in self.nodes if self._carries_constant(n))

    def _carries_constant(self, node: Node) -> bool:
        """Record the value of a Constant, or of an Identity of a constant; True for those."""
        if node.op == "Constant" and node.attrs:
            value = next(iter(node.attrs.values()))
            array = numpy_helper.to_array(value) if hasattr(value, "data_type") else value
            self.consts[node.out] = np.asarray(array)
        elif node.op == "Identity" and node.inputs[0] in self.consts:
            self.consts[node.out] = self.consts[node.inputs[0]]
        else:
            return False
        self.shapes[node.out] = tuple(self.consts[node.out].shape)
        return True

    def users(self, tensor: str) -> list[Node]:
        return self.readers.get(tensor, [])

    def only_user(self, tensor: str, *ops: str) -> Node | None:
        """The one node reading `tensor`, if it is one of `ops` (any op when none are given)."""
        users = self.users(tensor)
        if len(users) == 1 and (not ops or users[0].op in ops) and tensor not in self.outputs:
            return users[0]
        return None

    def user(self, tensor: str, op: str) -> Node | None:
        """The one node of type `op` among those reading `tensor` as their data (first) input."""
        found = [u for u in self.users(tensor) if u.op == op and u.inputs[0] == tensor]
        return found[0] if len(found) == 1 else None

    def shape(self, tensor: str) -> tuple[int, ...] | None:
        return self.shapes.get(tensor)

    def const(self, tensor: str) -> np.ndarray | None:
        return self.consts.get(tensor) if tensor else None


def _names(items: Sequence[Any]) -> set[str]:
    return {item.name for item in items}


# --- activations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    """An activation found after a tensor: latkit's name for it, or what the graph has where
    latkit has no such activation (then the op it follows is refused)."""

    act: str
    nodes: tuple[Node, ...]
    out: str


def _clip(g: Graph, node: Node) -> str:
    bounds = [g.const(name) for name in node.inputs[1:3]]
    low = node.attrs.get("min", bounds[0] if bounds and bounds[0] is not None else -np.inf)
    high = node.attrs.get("max", bounds[1] if len(bounds) > 1 and bounds[1] is not None else np.inf)
    return "relu6" if (float(low), float(high)) == (0.0, 6.0) else f"Clip({low}, {high})"


def _hard_sigmoid(g: Graph, node: Node) -> str:
    """x * HardSigmoid(x) is h-swish when the hard sigmoid is torch's, relu6(x + 3) / 6."""
    alpha, beta = node.attrs.get("alpha", 0.2), node.attrs.get("beta", 0.5)
    torch_like = abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6
    return "hswish" if torch_like else f"x*HardSigmoid(alpha={alpha:g}, beta={beta:g})"


#: one node after the tensor: op type -> latkit's activation
UNARY_ACTS: dict[str, Callable[[Graph, Node], str]] = {
    "Relu": lambda g, n: "relu",
    "Clip": _clip,
    "HardSwish": lambda g, n: "hswish",
}
#: x * gate(x): the gate's op type -> latkit's activation
GATED_ACTS: dict[str, Callable[[Graph, Node], str]] = {
    "Sigmoid": lambda g, n: "swish",
    "HardSigmoid": _hard_sigmoid,
}


def activation(g: Graph, x: str) -> Act | None:
    """The activation applied to `x`, when `x` is read by nothing else."""
    if x in g.outputs:
        return None
    users = g.users(x)
    if len(users) == 1 and users[0].op in UNARY_ACTS:
        return Act(UNARY_ACTS[users[0].op](g, users[0]), (users[0],), users[0].out)
    if len(users) == 1 and users[0].op in FOREIGN_ACTS:
        return Act(users[0].op, (users[0],), users[0].out)
    return _gated(g, x, users) if len(users) == 2 else None


def _gated(g: Graph, x: str, users: list[Node]) -> Act | None:
    """x * gate(x), the gate read by the Mul alone."""
    gate = next((u for u in users if u.op in GATED_ACTS), None)
    mul = next((u for u in users if u.op == "Mul"), None)
    if gate is None or mul is None or sorted(mul.inputs) != sorted((x, gate.out)):
        return None
    if g.only_user(gate.out) is not mul:
        return None
    return Act(GATED_ACTS[gate.op](g, gate), (gate, mul), mul.out)


def _act_problem(act: Act) -> list[str]:
    if act.act in ACTS:
        return []
    return [f"activation {act.act} is none of latkit's ({', '.join(ACTS)})"]


# --- convs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    """A 2-D conv's geometry, and what an op spec could not say about it."""

    node: Node
    batch: int
    hw: int
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    problems: tuple[str, ...]

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin == self.cout


def _pads(node: Node, size: Sequence[int], kernel: Sequence[int], strides: Sequence[int]) -> list:
    """The conv's pads [top, left, bottom, right], auto_pad resolved."""
    mode = node.attrs.get("auto_pad", "NOTSET")
    if mode == "NOTSET":
        return list(node.attrs.get("pads", [0, 0, 0, 0]))
    if mode == "VALID":
        return [0, 0, 0, 0]
    total = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides)]
    small = [t // 2 for t in total]
    large = [t - h for t, h in zip(total, small)]
    return small + large if mode == "SAME_UPPER" else large + small


def conv_of(g: Graph, node: Node) -> Conv | None:
    """The geometry of a 2-D Conv node with known shapes, else None."""
    x, w = g.shape(node.inputs[0]), g.shape(node.inputs[1])
    if node.op != "Conv" or x is None or w is None or len(x) != 4 or len(w) != 4:
        return None
    kh, kw = w[2], w[3]
    strides = list(node.attrs.get("strides", [1, 1]))
    dilations = list(node.attrs.get("dilations", [1, 1]))
    pads = _pads(node, x[2:], (kh, kw), strides)
    problems = []
    if kh != kw or kh % 2 == 0:
        problems.append(f"kernel {kh}x{kw} is not square and odd")
    if strides[0] != strides[1]:
        problems.append(f"strides {strides[0]}x{strides[1]} differ")
    if dilations != [1, 1]:
        problems.append(f"dilation {'x'.join(map(str, dilations))}")
    elif pads != [kh // 2] * 4:
        problems.append(f"padding {pads} is not {kh // 2} on every side")
    if x[2] != x[3]:
        problems.append(f"input {x[2]}x{x[3]} is not square")
    groups = int(node.attrs.get("group", 1))
    if w[1] * groups != x[1]:
        problems.append(f"its weight takes {w[1] * groups} input channels; its input has {x[1]}")
    return Conv(node, x[0], x[2], x[1], w[0], kh, strides[0], groups, tuple(problems))


# --- patterns ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A pattern found at the walk's tensor: its nodes, the tensor the walk goes on from, and
    the op specs it is (none for a node that computes nothing), or why no op spec is it."""

    nodes: tuple[Node, ...]
    out: str
    ops: tuple[OpSpec, ...] = ()
    why: str = ""


def _decide(nodes: Sequence[Node], out: str, problems: list[str], build: Callable) -> Match:
    """The op spec `build` makes, unless there are problems (or it refuses the fields)."""
    if not problems:
        try:
            return Match(tuple(nodes), out, (build(),))
        except LatkitError as exc:
            problems = [str(exc)]
    return Match(tuple(nodes), out, why="; ".join(problems))


def _passthrough(g: Graph, t: str) -> Match | None:
    node = g.only_user(t, *PASSTHROUGH)
    return Match((node,), node.out) if node else None


def _conv(g: Graph, t: str) -> Match | None:
    """A conv and its activation: latkit's `conv` op (conv, batch norm, activation)."""
    node = g.user(t, "Conv")
    c = conv_of(g, node) if node else None
    if c is None:
        return None
    act = activation(g, node.out)
    problems = list(c.problems)
    if c.groups != 1:
        what = "depthwise" if c.depthwise else f"grouped ({c.groups} groups)"
        problems.append(f"a {what} conv maps only inside an MBConv block, as its kxk conv")
    if act is None:
        problems.append("no activation follows: latkit's conv op is conv, batch norm, activation")
        return Match((node,), node.out, why="; ".join(problems))
    problems += _act_problem(act)
    geometry = dict(stride=c.stride, kernel=c.kernel, batch=c.batch)
    build = partial(OpSpec, "conv", c.hw, c.cin, c.cout, act=act.act, **geometry)
    return _decide((node, *act.nodes), act.out, problems, build)


def global_pool(g: Graph, node: Node | None) -> bool:
    """Whether `node` averages its NCHW input over H and W."""
    if node is None or node.op not in ("GlobalAveragePool", "ReduceMean"):
        return False
    if node.op == "GlobalAveragePool":
        return True
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1:
        axes = g.const(node.inputs[1])
    return axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [2, 3]


@dataclass(frozen=True)
class Dense:
    """[Flatten] -> Gemm, or MatMul [+ Add], on (N, C) features, and its activation if any."""

    nodes: tuple[Node, ...]
    out: str
    cin: int
    cout: int
    act: Act | None


def _affine(g: Graph, x: str) -> tuple[tuple[Node, ...], int] | None:
    """The Gemm, or MatMul [+ Add of a constant], reading `x` alone: (nodes, out features)."""
    node = g.only_user(x, "Gemm", "MatMul")
    weight = g.shape(node.inputs[1]) if node else None
    if node is None or weight is None or len(weight) != 2 or node.attrs.get("transA", 0):
        return None
    if node.op == "Gemm":
        return (node,), weight[0] if node.attrs.get("transB", 0) else weight[1]
    add = g.only_user(node.out, "Add")
    bias = add and next((g.const(i) for i in add.inputs if i != node.out), None)
    return ((node, add) if bias is not None else (node,)), weight[1]


def dense(g: Graph, t: str) -> Dense | None:
    """The dense layer reading pooled features `t`: (N, C, 1, 1) or (N, C)."""
    shape = g.shape(t)
    if shape is None or len(shape) not in (2, 4) or any(d != 1 for d in shape[2:]):
        return None
    nodes: tuple[Node, ...] = ()
    flat = g.only_user(t, *FLATTEN)
    if flat is not None and g.shape(flat.out) == shape[:2]:
        nodes, t = (flat,), flat.out
    elif len(shape) != 2:
        return None
    affine = _affine(g, t)
    if affine is None:
        return None
    nodes += affine[0]
    out = nodes[-1].out
    act = activation(g, out)
    return Dense(
        nodes + (act.nodes if act else ()), act.out if act else out, shape[1], affine[1], act
    )


def _dense(g: Graph, t: str) -> Match | None:
    """A dense layer on 1x1 features: a 1x1 `conv` op at input size 1 with an activation (as
    once-for-all's MobileNetV3 feature mix), else a `linear` op at input size 1."""
    d = dense(g, t)
    if d is None:
        return None
    batch = g.shape(t)[0]
    if d.act is None:
        return _decide(d.nodes, d.out, [], partial(OpSpec, "linear", 1, d.cin, d.cout, batch=batch))
    spec = partial(OpSpec, "conv", 1, d.cin, d.cout, act=d.act.act, batch=batch)
    return _decide(d.nodes, d.out, _act_problem(d.act), spec)


def _pool(g: Graph, t: str) -> Match | None:
    """A global pool: with a classifier without activation after it, latkit's `linear` op at
    the pooled size (it pools and classifies); otherwise a `pool` op."""
    node = g.only_user(t)
    shape = g.shape(t)
    if not global_pool(g, node) or shape is None or len(shape) != 4:
        return None
    batch, channels, hw = shape[0], shape[1], shape[2]
    problems = [] if shape[2] == shape[3] else [f"input {shape[2]}x{shape[3]} is not square"]
    head = dense(g, node.out)
    if head is not None and head.act is None:
        linear = partial(OpSpec, "linear", hw, channels, head.cout, batch=batch)
        return _decide((node, *head.nodes), head.out, problems, linear)
    pool = partial(OpSpec, "pool", hw, channels, channels, batch=batch)
    return _decide((node,), node.out, problems, pool)


# --- inverted-residual blocks --------------------------------------------------------------------


@dataclass(frozen=True)
class SqueezeExcite:
    """mean -> 1x1 conv -> act -> 1x1 conv -> gate -> Mul with the input: the style its gate
    names, its bottleneck width and inner activation, and what latkit's styles cannot say."""

    nodes: tuple[Node, ...]
    out: str
    style: str
    reduced: int
    act: str
    problems: tuple[str, ...]


#: the SE gate's op type -> latkit's SE style
SE_GATES = {"HardSigmoid": "mbv3", "Sigmoid": "effnet"}


def squeeze_excite(g: Graph, x: str) -> SqueezeExcite | None:
    """The squeeze-excite applied to `x`, if any."""
    users = g.users(x)
    pool = next((u for u in users if global_pool(g, u)), None)
    scale = next((u for u in users if u.op == "Mul"), None)
    if len(users) != 2 or pool is None or scale is None:
        return None
    reduce_ = g.only_user(pool.out, "Conv")
    act = activation(g, reduce_.out) if reduce_ else None
    expand = g.only_user(act.out, "Conv") if act else None
    gate = g.only_user(expand.out, *SE_GATES) if expand else None
    if gate is None or sorted(scale.inputs) != sorted((x, gate.out)):
        return None
    convs = [conv_of(g, reduce_), conv_of(g, expand)]
    if None in convs:
        return None
    problems = [p for c in convs for p in c.problems]
    problems += [
        f"SE conv {c.node.label} is {c.kernel}x{c.kernel} with {c.groups} groups, not a dense 1x1"
        for c in convs
        if c.kernel != 1 or c.groups != 1
    ]
    if gate.op == "HardSigmoid" and _hard_sigmoid(g, gate) != "hswish":
        problems.append("the SE's hard sigmoid is not torch's (alpha 1/6, beta 0.5)")
    nodes = (pool, reduce_, *act.nodes, expand, gate, scale)
    return SqueezeExcite(
        nodes, scale.out, SE_GATES[gate.op], convs[0].cout, act.act, tuple(problems)
    )


def _se_problems(se: SqueezeExcite, spec: OpSpec) -> list[str]:
    """What keeps `se` from being the SE of `spec` (whose se_style is `se.style`)."""
    problems = list(se.problems)
    inner = "relu" if se.style == "mbv3" else spec.act
    if se.act != inner:
        problems.append(f"{se.style} SE runs {inner}, this one {se.act}")
    if se.reduced != spec.se_reduced:
        problems.append(
            f"SE bottleneck of {se.reduced} channels; a {se.style} SE of this block has "
            f"{spec.se_reduced}"
        )
    return problems


@dataclass(frozen=True)
class Shuffle:
    """A channel shuffle as latkit writes it: Gather of a fixed channel permutation."""

    nodes: tuple[Node, ...]
    out: str
    order: np.ndarray


def shuffle_of(g: Graph, x: str) -> Shuffle | None:
    node = g.only_user(x, "Gather")
    order = g.const(node.inputs[1]) if node else None
    if order is None or node.attrs.get("axis", 0) != 1 or order.ndim != 1:
        return None
    return Shuffle((node,), node.out, order)


@dataclass(frozen=True)
class Block:
    """The parts of an inverted-residual block found after a tensor, before any is checked."""

    nodes: tuple[Node, ...]
    out: str
    depthwise: Conv
    act: Act
    project: Conv
    expand: Conv | None = None
    expand_act: Act | None = None
    shuffle: Shuffle | None = None
    se: SqueezeExcite | None = None
    skip: bool = False


def _expansion(g: Graph, c: Conv) -> tuple[Act, Shuffle | None, Conv] | None:
    """After a 1x1 expansion conv `c`: its activation, a shuffle if any, and the kxk conv."""
    act = activation(g, c.node.out)
    if act is None:
        return None
    shuffle = shuffle_of(g, act.out)
    spatial = g.only_user(shuffle.out if shuffle else act.out, "Conv")
    c2 = conv_of(g, spatial) if spatial else None
    return (act, shuffle, c2) if c2 is not None and c2.groups > 1 else None


def block_at(g: Graph, t: str) -> Block | None:
    """[1x1 conv + act [shuffle]] -> grouped conv + act -> [SE] -> 1x1 conv, no act -> [+ t]."""
    first = g.user(t, "Conv")
    c = conv_of(g, first) if first else None
    if c is None:
        return None
    parts: dict[str, Any] = {}
    if c.kernel == 1 and not c.depthwise:
        found = _expansion(g, c)
        if found is None:
            return None
        parts.update(expand=c, expand_act=found[0], shuffle=found[1])
        c = found[2]
    elif c.groups == 1:
        return None
    act = activation(g, c.node.out)
    se = squeeze_excite(g, act.out) if act else None
    last = g.only_user(se.out if se else act.out, "Conv") if act else None
    project = conv_of(g, last) if last else None
    if project is None or project.kernel != 1 or activation(g, last.out) is not None:
        return None
    add = g.only_user(last.out, "Add")
    skip = add is not None and sorted(add.inputs) == sorted((t, last.out))
    nodes = [parts["expand"].node, *parts["expand_act"].nodes] if parts else []
    nodes += [*(parts["shuffle"].nodes if parts.get("shuffle") else ()), c.node, *act.nodes]
    nodes += [*(se.nodes if se else ()), last, *((add,) if skip else ())]
    out = add.out if skip else last.out
    return Block(tuple(nodes), out, c, act, project, se=se, skip=skip, **parts)


def _block_problems(b: Block) -> list[str]:
    """What no block op spec can say about `b`, before its fields are put together."""
    convs = [c for c in (b.expand, b.depthwise, b.project) if c is not None]
    problems = [p for c in convs for p in c.problems]
    problems += _act_problem(b.act)
    if not b.depthwise.depthwise:
        problems.append(
            f"its {b.depthwise.kernel}x{b.depthwise.kernel} conv has {b.depthwise.groups} "
            f"groups, not one per channel ({b.depthwise.cin}): not depthwise"
        )
    if b.expand_act is not None and b.expand_act.act != b.act.act:
        problems.append(f"expansion act {b.expand_act.act}, depthwise act {b.act.act}")
    if b.expand is not None and b.expand.groups != b.project.groups:
        problems.append(f"expansion groups {b.expand.groups}, projection {b.project.groups}")
    if b.shuffle is not None and not _is_shuffle(b.shuffle.order, b.project.groups):
        problems.append(f"the Gather is not the channel shuffle of {b.project.groups} groups")
    return problems


def _is_shuffle(order: np.ndarray, groups: int) -> bool:
    channels = len(order)
    if groups < 2 or channels % groups:
        return False
    return np.array_equal(order, shuffle_order(channels, groups))


def _block_type(b: Block) -> tuple[str, list[str]]:
    """`irf` for a ratio-1 expansion conv or a shuffle, else `mbconv`; and why neither fits."""
    if b.expand is None:
        return "mbconv", []
    if b.shuffle is None and b.expand.cout == b.expand.cin and b.project.groups > 1:
        return "irf", ["a grouped ratio-1 expansion without a channel shuffle (irf shuffles)"]
    irf = b.shuffle is not None or b.expand.cout == b.expand.cin
    return ("irf" if irf else "mbconv"), []


def _block(g: Graph, t: str) -> Match | None:
    """An inverted-residual block: latkit's `mbconv` or `irf` op."""
    b = block_at(g, t)
    if b is None:
        return None
    kind, problems = _block_type(b)
    problems = _block_problems(b) + problems
    return _decide(b.nodes, b.out, problems, partial(_block_spec, b, kind))


def _block_spec(b: Block, kind: str) -> OpSpec:
    """The op spec of block `b`; a LatkitError says why none is it (e.g. a foreign SE)."""
    first = b.expand or b.depthwise
    spec = OpSpec(
        kind,
        first.hw,
        first.cin,
        b.project.cout,
        stride=b.depthwise.stride,
        kernel=b.depthwise.kernel,
        expand=b.depthwise.cin / first.cin,
        groups=b.project.groups,
        se=b.se is not None,
        act=b.act.act,
        skip=b.skip,
        batch=first.batch,
        se_style=b.se.style if b.se else "mbv3",
    )
    problems = _se_problems(b.se, spec) if b.se else []
    if problems:
        raise LatkitError("; ".join(problems))
    return spec


# --- the walk ------------------------------------------------------------------------------------

#: the patterns tried at each tensor, in order
MATCHERS: tuple[Callable[[Graph, str], Match | None], ...] = (
    _passthrough,
    _block,
    _conv,
    _pool,
    _dense,
)


def _leak(g: Graph, match: Match) -> str:
    """Why a pattern is not self-contained (one of its inner tensors is read outside it), or ''."""
    inside = set(match.nodes)
    for node in match.nodes:
        for tensor in node.outputs:
            if tensor == match.out or not tensor:
                continue
            if tensor in g.outputs or any(u not in inside for u in g.users(tensor)):
                return f"its tensor {tensor} is also read outside it"
    return ""


def _next_match(g: Graph, t: str, done: set[Node]) -> Match | None:
    """The first pattern at `t` made of nodes not yet walked; else the one node left to read
    `t`, refused; None where the graph branches into several."""
    for matcher in MATCHERS:
        match = matcher(g, t)
        if match is not None and not done.intersection(match.nodes):
            return match
    left = [u for u in g.users(t) if u not in done]
    if len(left) != 1:
        return None
    why = f"{left[0].op} is in no pattern of op specs"
    if g.shape(t) is None:
        why += f" (shape inference left the size of {t} unknown)"
    return Match((left[0],), left[0].out, why=why)


def walk(g: Graph) -> tuple[list[OpSpec], dict[Node, str]]:
    """Op specs from the input to the output, and each refused node with its reason (nodes off
    the walked chain included)."""
    t, ops, done, refused = g.input, [], set(g.plumbing), {}
    while t not in g.outputs:
        match = _next_match(g, t, done)
        if match is None:
            break
        why = match.why or _leak(g, match)
        if why:
            refused.update((node, why) for node in match.nodes)
        else:
            ops.extend(match.ops)
        done.update(match.nodes)
        t = match.out
    for node in g.nodes:
        if node not in done:
            refused[node] = "off the chain walked from the input to the output"
    return ops, refused
