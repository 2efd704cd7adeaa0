"""A small jaxpr -> ONNX converter: trace a JAX function, emit one ONNX op (or a few) per primitive.

Why our own and not jax2onnx: jax2onnx 0.17.1 (the newest on PyPI) pins orbax-checkpoint < 0.11.37
(this project pins 0.12.8), pulls the CPU `onnxruntime` wheel over our `onnxruntime-gpu` and brings
equinox, dm-pix, huggingface-hub, netron and orbax-export; and it fails to trace our sampler with a
symbolic batch (its patched `jnp.full` calls int() on the batch dimension; docs/learner.md, "ONNX
export"). Our networks use few primitives, so a table of rules is short, and a network change
that uses a primitive without a rule fails loudly at export (and in the parity test).

The function is traced with `jax.make_jaxpr` under a symbolic batch (`jax.export.symbolic_shape`),
so the graph keeps a dynamic batch dimension. Three generic rewrites give the graph the cost of a
hand-folded one:
  * constant folding, also of values that are constant along the batch (the flow time features
    `jnp.full((B,), t)`): such constants are kept with size 1 in the batch dimensions and left to
    ONNX broadcasting;
  * a dense layer on a concatenation, `concat(x_1..x_n) @ W`, becomes `sum_i x_i @ W_i`, so constant
    parts fold away and a part that repeats (the observation encoding in every flow step) ...
  * ... is computed once: identical nodes are merged (common subexpressions) and unused ones dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.extend.core as jcore
import numpy as np
import onnx
from jax.core import ShapedArray
from onnx import helper

from lwd_learner.jaxpr_onnx_rules import (
    ELEMENTWISE,
    PrimitiveRules,
    einsum_equation,
    is_symbolic,
    reduced_shape,
)

OPSET = 17

_PASS_THROUGH = {"stop_gradient", "copy", "optimization_barrier"}  # identities at inference
# Primitives that only wrap a sub-jaxpr: inlined.
_CALLS = {
    "jit",
    "pjit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "remat",
    "checkpoint",
    "custom_vjp_call_jaxpr",
}


@dataclass(frozen=True)
class GraphInput:
    """One ONNX graph input. `shape` names symbolic dimensions with strings ("B"); `onnx_dtype` is what
    the graph accepts, `jax_dtype` what the traced function takes (a Cast sits between when they differ,
    e.g. int64 task ids for a JAX without x64)."""

    name: str
    shape: tuple[int | str, ...]
    onnx_dtype: Any
    jax_dtype: Any = None


def _np_broadcast_in_dim(x, shape, broadcast_dimensions, **_):
    x = np.expand_dims(x, [i for i in range(len(shape)) if i not in broadcast_dimensions])
    return np.broadcast_to(x, shape)


# Constant folding in numpy where it is plain (an XLA op compiled per fold costs ~50 ms; parameters
# of a policy go through dozens of reshapes and broadcasts); other primitives fold through jax.
def _ew(f: Callable) -> Callable:
    return lambda *xs, **_: f(*xs)  # elementwise primitives' params (accuracy=...) do not change the result


_NUMPY_ELEMENTWISE: dict[str, Callable] = {
    "add": np.add,
    "add_any": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "abs": np.abs,
    "sqrt": np.sqrt,
    "lt": np.less,
    "gt": np.greater,
    "le": np.less_equal,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
    "square": np.square,
    "logistic": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "select_n": lambda p, *cases: np.where(p, cases[1], cases[0]) if len(cases) == 2 else None,
}

_NUMPY: dict[str, Callable] = {
    **{k: _ew(f) for k, f in _NUMPY_ELEMENTWISE.items()},
    "integer_pow": lambda x, y, **_: x**y,
    "convert_element_type": lambda x, new_dtype, **_: x.astype(new_dtype),
    "reshape": lambda x, new_sizes, dimensions=None, **_: None if dimensions else x.reshape(new_sizes),
    "broadcast_in_dim": _np_broadcast_in_dim,
    "transpose": lambda x, permutation, **_: np.transpose(x, permutation),
    "concatenate": lambda *xs, dimension, **_: np.concatenate(xs, axis=dimension),
    "reduce_sum": lambda x, axes, **_: np.sum(x, axis=axes),
    "reduce_max": lambda x, axes, **_: np.max(x, axis=axes),
    "reduce_min": lambda x, axes, **_: np.min(x, axis=axes),
    "dot_general": lambda a, b, dimension_numbers, **_: np.einsum(
        einsum_equation(a.ndim, b.ndim, dimension_numbers), a, b
    ),
}


class _Converter(PrimitiveRules):
    """Walks a jaxpr, folds what is known at export, emits the rest through the rules
    (lwd_learner.jaxpr_onnx_rules), and drops what the outputs do not need."""

    # ---- jaxpr walking ---------------------------------------------------------------------
    def run(self, jaxpr: jcore.Jaxpr, consts: Sequence, args: Sequence) -> list:
        env: dict = {}

        def read(a):
            if isinstance(a, jcore.Literal):
                return np.asarray(a.val, cast(ShapedArray, a.aval).dtype)  # a literal is a typed scalar
            return env[a]

        for var, val in zip(jaxpr.constvars, consts, strict=True):
            env[var] = np.asarray(val)
        for var, val in zip(jaxpr.invars, args, strict=True):
            env[var] = val
        for eqn in jaxpr.eqns:
            outs = self.eqn(eqn, [read(a) for a in eqn.invars])
            for var, val in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, jcore.DropVar):
                    env[var] = val
        return [read(a) for a in jaxpr.outvars]

    def eqn(self, eqn, vals: list) -> list:
        name = eqn.primitive.name
        if name in _CALLS:
            sub = next(p for p in eqn.params.values() if isinstance(p, (jcore.ClosedJaxpr, jcore.Jaxpr)))
            if isinstance(sub, jcore.ClosedJaxpr):
                return self.run(sub.jaxpr, sub.consts, vals)
            return self.run(sub, [], vals)
        if name in _PASS_THROUGH:
            return vals
        in_avals = [a.aval for a in eqn.invars]
        out_avals = [v.aval for v in eqn.outvars]
        if all(not isinstance(v, str) for v in vals):
            folded = self.fold(eqn, vals, in_avals, out_avals)
            if folded is not None:
                return folded
        rule = getattr(self, f"_{name}", None)
        if rule is None and name not in ELEMENTWISE:
            raise NotImplementedError(
                f"no ONNX rule for JAX primitive {name!r} (add one to lwd_learner.jaxpr_onnx_rules)"
            )
        if rule is None:
            return [self.elementwise(ELEMENTWISE[name], vals, in_avals)]
        out = rule(vals, in_avals, out_avals[0], **eqn.params)
        return out if isinstance(out, list) else [out]

    def fold(self, eqn, vals, in_avals, out_avals) -> list | None:
        """Evaluate an equation on constants now; None when it must run in the graph. A batch-constant
        (symbolic dims stored as size 1) folds only through primitives that treat the batch
        dimensions independently."""
        symbolic = any(is_symbolic(d) for a in [*in_avals, *out_avals] for d in a.shape)
        p = eqn.params
        name = eqn.primitive.name
        if symbolic:
            sym_axes = [i for i, d in enumerate(in_avals[0].shape) if is_symbolic(d)] if in_avals else []
            ok = (
                name in ELEMENTWISE
                or name
                in (
                    "broadcast_in_dim",
                    "convert_element_type",
                    "transpose",
                    "select_n",
                    "integer_pow",
                    "square",
                    "rsqrt",
                )
                or (name == "concatenate" and p["dimension"] not in sym_axes)
                or (name in ("reduce_sum", "reduce_max", "reduce_min") and not set(p["axes"]) & set(sym_axes))
                or (
                    name == "dot_general"
                    and not any(  # the batch must not be contracted or batched
                        is_symbolic(a.shape[i])
                        for group in p["dimension_numbers"]
                        for a, dims in zip(in_avals, group, strict=True)
                        for i in dims
                    )
                )
            )
            if not ok:
                return None
            if name == "broadcast_in_dim":
                p = {**p, "shape": reduced_shape(p["shape"])}
        if name in ELEMENTWISE or name in ("select_n", "integer_pow", "square", "rsqrt"):
            shape = reduced_shape(out_avals[0].shape)  # operands of one shape, literals and batch-constants
            vals = [np.broadcast_to(v, shape) for v in vals]
        vals = [np.asarray(v) for v in vals]
        out = _NUMPY[name](*vals, **p) if name in _NUMPY else None
        if out is not None:
            return [np.asarray(out, out_avals[0].dtype)]
        out = eqn.primitive.bind(*vals, **p)
        outs = out if eqn.primitive.multiple_results else [out]
        return [np.asarray(o) for o in outs]

    # ---- dead code ---------------------------------------------------------------------------
    def prune(self, outputs: list[str]) -> None:
        """Drop nodes and initialisers the outputs do not need (concatenations split by a dense layer)."""
        live = set(outputs)
        keep = []
        for node in reversed(self.nodes):
            if any(o in live for o in node.output):
                keep.append(node)
                live.update(node.input)
        self.nodes = keep[::-1]
        self.inits = {k: v for k, v in self.inits.items() if k in live}


def jax_to_onnx(
    fn: Callable,
    inputs: Sequence[GraphInput],
    output_names: Sequence[str],
    graph_name: str = "jax_graph",
    opset: int = OPSET,
) -> onnx.ModelProto:
    """ONNX model of `fn(*inputs) -> output(s)`; what `fn` closes over (parameters) becomes initialisers."""
    names = sorted({d for i in inputs for d in i.shape if isinstance(d, str)})
    syms = dict(zip(names, jax.export.symbolic_shape(", ".join(names)), strict=True)) if names else {}
    specs = [
        jax.ShapeDtypeStruct(
            tuple(syms[d] if isinstance(d, str) else d for d in i.shape), i.jax_dtype or i.onnx_dtype
        )
        for i in inputs
    ]
    closed = jax.make_jaxpr(fn)(*specs)
    conv = _Converter(opset)
    args = []
    for i, spec in zip(inputs, specs, strict=True):
        for axis, d in enumerate(spec.shape):
            if is_symbolic(d) and not any(s is d or (s == d) for s, _, _ in conv._syms):
                conv._syms.append((d, i.name, axis))
        x = i.name
        if i.jax_dtype is not None and np.dtype(i.jax_dtype) != np.dtype(i.onnx_dtype):
            x = conv.op("Cast", [x], to=helper.np_dtype_to_tensor_dtype(np.dtype(i.jax_dtype)))
        args.append(x)
    outs = conv.run(closed.jaxpr, closed.consts, args)
    out_avals = [v.aval for v in closed.jaxpr.outvars]
    final = []
    for name, v, aval in zip(output_names, outs, out_avals, strict=True):
        conv.nodes.append(helper.make_node("Identity", [conv.runtime(v, aval)], [name]))
        final.append(name)
    conv.prune(final)

    def info(name, dtype, shape):
        dims = [str(d) if is_symbolic(d) else int(d) for d in shape]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)

    graph = helper.make_graph(
        conv.nodes,
        graph_name,
        [info(i.name, i.onnx_dtype, i.shape) for i in inputs],
        [info(n, a.dtype, a.shape) for n, a in zip(output_names, out_avals, strict=True)],
        list(conv.inits.values()),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what the robots' ONNX Runtime builds read, as the hand-built exporter wrote
    return model
