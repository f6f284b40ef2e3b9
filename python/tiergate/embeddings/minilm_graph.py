"""all-MiniLM-L6-v2 as an ONNX graph written from its weights: float32, or with integer matrix products.

A BERT encoder (6 layers, 12 heads, 384 wide, FFN 1536, exact erf GELU), computed as
`tests/embedding_reference.py` computes it in numpy: (input_ids, attention_mask) -> last_hidden_state
[batch, tokens, 384]; the worker mean-pools and normalises. Setup time only (`model_build.py`): it needs the
`onnx` package, which the sidecar and the worker never import.

The integer form keeps every weight int8 in onnxruntime's memory:

- A weight MatMul reads its input as uint8 codes with one scale per token (row): round(x / (max|x| / 127))
  + 128, through `QuantizeLinear` with one block per row; its weights are int8 with one scale per output
  channel; `MatMulIntegerToFloat` (onnxruntime's) multiplies them, then the row scales and the bias apply.
  One scale per row, not one per call as `quantize_dynamic`'s `DynamicQuantizeLinear` uses: with one per
  call, a token with large activations coarsens every other token's codes (cosine 0.983 against fp32).
  uint8 x int8 is onnxruntime's fast pair with VNNI or AMX; on an AVX2 CPU without VNNI its kernel can
  saturate 16-bit sums. uint8 x uint8 never does, agrees as well, but took ~1.5x as long on the Xeon the
  bench ran on; the build's own check against the float32 graph (`model_build.py`) runs on the machine
  that builds, so a CPU where saturation hurt would fail `make setup` rather than serve worse vectors.
- SmoothQuant: a MatMul's input channels are divided by factors `s` and its weight rows multiplied by them
  (the same product), moving the activations' outlier channels into the weights, where per-channel int8
  absorbs them. `model_build.calibrate` measures the channels; for the attention output the division is
  folded into the value projection's columns (context channel j is value channel j), elsewhere it is a Mul.
- The word embeddings (a third of the weights) are int8 with one scale per row; a Gather takes the rows a
  text uses and only those are turned into float32. A graph that dequantizes whole weights with Cast and Mul
  (the int8 export shipped before) is constant-folded by onnxruntime at load into float32 weights.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

LAYERS = 6
HEADS = 12
HIDDEN = 384
FFN = 1536
_EPS = 1e-12
_MASKED = -10000.0  # added to the attention scores of padding, as BERT does
# 21: QuantizeLinear with `block_size` (one scale per row); com.microsoft: MatMulIntegerToFloat.
OPSETS = (("", 21), ("com.microsoft", 1))

# Each layer's weight MatMuls by the input they read (a smoothing site) and that input's width.
SITES = {
    "attention.self": (("attention.self.query", "attention.self.key", "attention.self.value"), HIDDEN),
    "attention.output": (("attention.output.dense",), HIDDEN),
    "intermediate": (("intermediate.dense",), HIDDEN),
    "output": (("output.dense",), FFN),
}

Array = npt.NDArray[np.float32]


def site_names() -> list[str]:
    return [f"encoder.layer.{i}.{site}" for i in range(LAYERS) for site in SITES]


class _Graph:
    """Nodes and initializers; each node's output (and name) is its op and a counter."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0
        self._consts: dict[str, str] = {}

    def const(self, name: str, array: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def scalar(self, value: float | int, dtype: type[np.generic]) -> str:
        """A shared scalar constant, made on first use."""
        key = f"{dtype.__name__}_{value}"
        if key not in self._consts:
            self._consts[key] = self.const(key, np.array(value, dtype))
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, domain: str = "", **attributes: object) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        node = helper.make_node(op_type, list(inputs), [out], out, None, domain)
        node.attribute.extend(helper.make_attribute(key, value) for key, value in attributes.items())
        self.nodes.append(node)
        return out


class _Encoder:
    def __init__(self, w: dict[str, Array], smooth: dict[str, Array], integer: bool, expose: bool) -> None:
        self.w = w
        self.smooth = smooth
        self.integer = integer
        self.expose = expose
        self.sites: list[str] = []
        self.g = _Graph()

    def site(self, x: str, name: str, *, folded: bool = False) -> tuple[str, str]:
        """The input `x` of the MatMuls of site `name`, as they read it: (codes, row scales) when integer,
        else (x, ""). `folded`: its smoothing division is already in the op that made `x`."""
        g = self.g
        if self.expose:
            g.nodes.append(helper.make_node("Identity", [x], [name], name=name))
            self.sites.append(name)
        if name in self.smooth and not folded:
            x = g.op("Mul", x, g.const(name + ".smooth", (1.0 / self.smooth[name]).astype(np.float32)))
        if not self.integer:
            return x, ""
        width = SITES[name.split(".", 3)[3]][1]
        axis = g.const(name + ".axis", np.array([-1], np.int64))
        row_max = g.op("ReduceMax", g.op("Abs", x), axis, keepdims=1)
        row_scale = g.op(
            "Div", g.op("Max", row_max, g.scalar(1e-12, np.float32)), g.scalar(127.0, np.float32)
        )
        # QuantizeLinear takes a zero point shaped like its scales: 128 for every row.
        zero = g.op("Mul", row_scale, g.scalar(0.0, np.float32))
        zero = g.op("Cast", g.op("Add", zero, g.scalar(128.0, np.float32)), to=TensorProto.UINT8)
        return g.op("QuantizeLinear", x, row_scale, zero, axis=-1, block_size=width), row_scale

    def dense(
        self, x: tuple[str, str], site: str, name: str, scale: float = 1.0, columns: Array | None = None
    ) -> str:
        """x @ W.T + b of the weights `name`; `scale` multiplies W and b, `columns` W's columns and b."""
        g = self.g
        weight = self.w[name + ".weight"].T * scale  # [in, out]
        bias = self.w[name + ".bias"] * scale
        if site in self.smooth:
            weight = weight * self.smooth[site][:, None]
        if columns is not None:
            weight, bias = weight * columns[None, :], bias * columns
        bias_name = g.const(name + ".bias", bias.astype(np.float32))
        if not self.integer:
            return g.op(
                "Add", g.op("MatMul", x[0], g.const(name + ".weight", weight.astype(np.float32))), bias_name
            )
        column_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
        codes = np.clip(np.rint(weight / column_scale), -127, 127).astype(np.int8)
        product = g.op(
            "MatMulIntegerToFloat",
            x[0],
            g.const(name + ".int8", codes),
            g.scalar(1.0, np.float32),
            g.const(name + ".scale", column_scale.astype(np.float32)),
            g.scalar(128, np.uint8),
            domain="com.microsoft",
        )
        return g.op("Add", g.op("Mul", product, x[1]), bias_name)

    def norm(self, x: str, name: str) -> str:
        gamma = self.g.const(name + ".weight", self.w[name + ".weight"])
        beta = self.g.const(name + ".bias", self.w[name + ".bias"])
        return self.g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=_EPS)

    def embeddings(self) -> str:
        g, w = self.g, self.w
        # int8 rows, one scale each: the Cast and Mul apply to the gathered rows only, so onnxruntime cannot
        # fold them into a float32 table at load (the ids are known at run time only).
        table = w["embeddings.word_embeddings.weight"]
        row_scale = np.maximum(np.abs(table).max(axis=1), 1e-12) / 127.0
        codes = np.clip(np.rint(table / row_scale[:, None]), -127, 127).astype(np.int8)
        rows = g.op("Gather", g.const("word_embeddings.int8", codes), "input_ids")
        scales = g.op(
            "Gather", g.const("word_embeddings.scale", row_scale[:, None].astype(np.float32)), "input_ids"
        )
        words = g.op("Mul", g.op("Cast", rows, to=TensorProto.FLOAT), scales)
        # Positions 0..n-1 with the token type 0 embedding added in (the worker sends no token types).
        positions = (
            w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
        )
        tokens = g.op("Shape", "input_ids", start=1, end=2)
        zero = g.const("position_start", np.array([0], np.int64))
        position_rows = g.op("Slice", g.const("positions", positions.astype(np.float32)), zero, tokens, zero)
        return self.norm(g.op("Add", words, position_rows), "embeddings.LayerNorm")

    def layer(self, x: str, i: int, mask_bias: str) -> str:
        g = self.g
        p = f"encoder.layer.{i}."
        size = HIDDEN // HEADS
        heads = g.const(p + "heads_shape", np.array([0, 0, HEADS, size], np.int64))
        merged = g.const(p + "merged_shape", np.array([0, 0, HIDDEN], np.int64))
        s = self.site(x, p + "attention.self")
        # 1/sqrt(head size) goes into the query's weights and bias: the same product, one node fewer.
        q = self.dense(s, p + "attention.self", p + "attention.self.query", 1.0 / math.sqrt(size))
        k = self.dense(s, p + "attention.self", p + "attention.self.key")
        after = self.smooth.get(p + "attention.output")
        v = self.dense(
            s,
            p + "attention.self",
            p + "attention.self.value",
            columns=None if after is None else 1.0 / after,
        )
        q, k, v = (g.op("Reshape", t, heads) for t in (q, k, v))
        scores = g.op(
            "MatMul", g.op("Transpose", q, perm=[0, 2, 1, 3]), g.op("Transpose", k, perm=[0, 2, 3, 1])
        )
        probs = g.op("Softmax", g.op("Add", scores, mask_bias), axis=-1)
        context = g.op("MatMul", probs, g.op("Transpose", v, perm=[0, 2, 1, 3]))
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merged)
        s = self.site(context, p + "attention.output", folded=True)
        x = self.norm(
            g.op("Add", self.dense(s, p + "attention.output", p + "attention.output.dense"), x),
            p + "attention.output.LayerNorm",
        )
        inner = self.dense(self.site(x, p + "intermediate"), p + "intermediate", p + "intermediate.dense")
        # erf GELU, in the form onnxruntime fuses into one kernel.
        one = g.scalar(1.0, np.float32)
        erf = g.op("Erf", g.op("Div", inner, g.scalar(math.sqrt(2.0), np.float32)))
        gelu = g.op("Mul", g.op("Mul", inner, g.op("Add", erf, one)), g.scalar(0.5, np.float32))
        out = self.dense(self.site(gelu, p + "output"), p + "output", p + "output.dense")
        return self.norm(g.op("Add", out, x), p + "output.LayerNorm")


def graph(
    w: dict[str, Array],
    smooth: dict[str, Array] | None = None,
    *,
    integer: bool = False,
    expose_sites: bool = False,
) -> onnx.ModelProto:
    """The encoder: (input_ids, attention_mask) -> last_hidden_state [batch, tokens, 384].

    Args:
        w: the upstream weights, named as in `model.safetensors` without the `bert.` prefix.
        smooth: per site (`site_names()`), the SmoothQuant factors of its input channels.
        integer: weight MatMuls on int8 codes (see the module docstring); else float32 throughout.
        expose_sites: each site's input (before smoothing) is an output too, named as the site.
    """
    encoder = _Encoder(w, smooth or {}, integer, expose_sites)
    g = encoder.g
    x = encoder.embeddings()
    # Padding gets -10000 before the softmax: [batch, 1, 1, tokens].
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    masked = g.op("Mul", g.op("Sub", g.scalar(1.0, np.float32), mask), g.scalar(_MASKED, np.float32))
    mask_bias = g.op("Unsqueeze", masked, g.const("mask_axes", np.array([1, 2], np.int64)))
    for i in range(LAYERS):
        x = encoder.layer(x, i, mask_bias)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
        for name in ("input_ids", "attention_mask")
    ]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", HIDDEN])
    ]
    outputs += [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "tokens", "channels"])
        for name in encoder.sites
    ]
    model = helper.make_model(
        helper.make_graph(g.nodes, "all-MiniLM-L6-v2", inputs, outputs, g.initializers),
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in OPSETS],
        producer_name="tiergate.embeddings.model_build",
    )
    onnx.checker.check_model(model)
    return model
