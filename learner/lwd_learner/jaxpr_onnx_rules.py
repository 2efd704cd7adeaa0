"""The ONNX side of the jaxpr -> ONNX converter (lwd_learner.jaxpr_onnx): a graph builder that
shares constants and identical nodes, and one emission rule per JAX primitive.

Every value is either an ONNX tensor name (computed at run time) or a numpy array (known at export;
a batch-constant is stored with size 1 in its symbolic dimensions).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Elementwise JAX primitives and the ONNX op of the same meaning (batch-constants fold through them).
ELEMENTWISE = {
    "add": "Add",
    "add_any": "Add",  # the sum of cotangents in a VJP (real-time chunking's guidance)
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "max": "Max",
    "min": "Min",
    "pow": "Pow",
    "neg": "Neg",
    "exp": "Exp",
    "log": "Log",
    "sin": "Sin",
    "cos": "Cos",
    "tanh": "Tanh",
    "abs": "Abs",
    "logistic": "Sigmoid",
    "sqrt": "Sqrt",
    "erf": "Erf",
    "sign": "Sign",
    "floor": "Floor",
    "ceil": "Ceil",
    "lt": "Less",
    "gt": "Greater",
    "le": "LessOrEqual",
    "ge": "GreaterOrEqual",
    "eq": "Equal",
    "and": "And",
    "or": "Or",
    "not": "Not",
}
# ONNX ops that broadcast their inputs (numpy rules), so a batch-constant needs no Expand.
BROADCASTING = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Pow",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Equal",
    "And",
    "Or",
    "Where",
}


@dataclass(frozen=True)
class _Aval:
    """Shape and dtype of a value the converter makes up itself (a slice of a weight)."""

    shape: tuple
    dtype: Any


def einsum_equation(lhs_rank: int, rhs_rank: int, dimension_numbers) -> str:
    """The einsum equation of a dot_general (output: batch, lhs free, rhs free axes)."""
    (lc, rc), (lb, rb) = dimension_numbers
    letters = iter(string.ascii_lowercase)
    ls = [next(letters) for _ in range(lhs_rank)]
    rs = [next(letters) for _ in range(rhs_rank)]
    for i, j in zip([*lc, *lb], [*rc, *rb], strict=True):
        rs[j] = ls[i]
    out = (
        [ls[i] for i in lb]
        + [c for i, c in enumerate(ls) if i not in lc and i not in lb]
        + [c for j, c in enumerate(rs) if j not in rc and j not in rb]
    )
    return f"{''.join(ls)},{''.join(rs)}->{''.join(out)}"


def is_symbolic(d) -> bool:
    return not isinstance(d, (int, np.integer))


def reduced_shape(shape) -> tuple[int, ...]:
    """A batch-constant's stored shape: size 1 in every symbolic dimension."""
    return tuple(1 if is_symbolic(d) else int(d) for d in shape)


class GraphBuilder:
    """ONNX nodes and initialisers, with constants and identical nodes shared."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self._const_names: dict[tuple, str] = {}
        self._cse: dict[tuple, str] = {}
        self._concats: dict[str, tuple[int, list]] = {}  # runtime concat output -> (axis, parts)
        self._dense: dict[str, tuple[str, np.ndarray]] = {}  # runtime x @ W (W constant) -> (x, W)
        self._syms: list[tuple[Any, str, int]] = []  # (symbol, graph input, axis) to read it at run time
        self._n = 0

    # ---- graph building ------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, value: np.ndarray) -> str:
        value = np.ascontiguousarray(value)
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._const_names:
            name = self.fresh("c")
            self._const_names[key] = name
            self.inits[name] = numpy_helper.from_array(value, name)
        return self._const_names[key]

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        key = (op_type, tuple(inputs), repr(sorted(attrs.items())))
        if key not in self._cse:
            out = self.fresh(op_type.lower())
            self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
            self._cse[key] = out
        return self._cse[key]

    def dim(self, d) -> str:
        """int64 [1] tensor holding dimension d (an int, or k times a graph input's symbolic dim)."""
        if not is_symbolic(d):
            return self.const(np.array([d], np.int64))
        for sym, name, axis in self._syms:
            for k in range(1, 4097):
                if d == k * sym:
                    size = self.op("Shape", [name], start=axis, end=axis + 1)
                    return size if k == 1 else self.op("Mul", [size, self.const(np.array([k], np.int64))])
        raise NotImplementedError(f"symbolic dimension {d} is not a multiple of an input's dimension")

    def shape(self, shape) -> str:
        if not any(is_symbolic(d) for d in shape):
            return self.const(np.array(shape, np.int64))
        return self.op("Concat", [self.dim(d) for d in shape], axis=0)

    def runtime(self, v, aval) -> str:
        """Name of a runtime tensor for v; a batch-constant is expanded to its full shape."""
        if isinstance(v, str):
            return v
        name = self.const(np.asarray(v, aval.dtype))
        if any(is_symbolic(d) for d in aval.shape):
            name = self.op("Expand", [name, self.shape(aval.shape)])
        return name

    def operand(self, v, aval, broadcasting: bool) -> str:
        if isinstance(v, str) or not broadcasting:
            return self.runtime(v, aval)
        return self.const(np.asarray(v, aval.dtype))  # ONNX broadcasts the size-1 batch dimensions

    def elementwise(self, op_type: str, vals, in_avals) -> str:
        bc = op_type in BROADCASTING
        return self.op(op_type, [self.operand(v, a, bc) for v, a in zip(vals, in_avals, strict=True)])


class PrimitiveRules(GraphBuilder):
    """One method `_<primitive>` per JAX primitive with a rule (elementwise ones use `elementwise`);
    `vals` are runtime names or numpy constants."""

    def _convert_element_type(self, vals, in_avals, out_aval, new_dtype, **_):
        x = self.runtime(vals[0], in_avals[0])
        if np.dtype(in_avals[0].dtype) == np.dtype(new_dtype):
            return x
        return self.op("Cast", [x], to=helper.np_dtype_to_tensor_dtype(np.dtype(new_dtype)))

    def _square(self, vals, in_avals, out_aval, **_):
        x = self.runtime(vals[0], in_avals[0])
        return self.op("Mul", [x, x])

    def _integer_pow(self, vals, in_avals, out_aval, y, **_):
        x = self.runtime(vals[0], in_avals[0])
        return self.op("Pow", [x, self.const(np.array(y, np.dtype(out_aval.dtype)))])

    def _rsqrt(self, vals, in_avals, out_aval, **_):
        return self.op("Reciprocal", [self.op("Sqrt", [self.runtime(vals[0], in_avals[0])])])

    def _ne(self, vals, in_avals, out_aval, **_):
        return self.op("Not", [self.elementwise("Equal", vals, in_avals)])

    def _select_n(self, vals, in_avals, out_aval, **_):
        if len(vals) != 3:
            raise NotImplementedError("select_n with more than two cases")
        pred = self.operand(vals[0], in_avals[0], True)
        if np.dtype(in_avals[0].dtype) != np.bool_:
            pred = self.op("Cast", [pred], to=onnx.TensorProto.BOOL)
        return self.op(
            "Where",
            [pred, self.operand(vals[2], in_avals[2], True), self.operand(vals[1], in_avals[1], True)],
        )

    def _reshape(self, vals, in_avals, out_aval, new_sizes, dimensions=None, **_):
        if dimensions is not None:
            raise NotImplementedError("reshape with dimensions")
        x = self.runtime(vals[0], in_avals[0])
        syms = [d for d in new_sizes if is_symbolic(d)]
        if len(syms) == 1:  # let ONNX infer the one dynamic dimension
            return self.op(
                "Reshape",
                [x, self.const(np.array([-1 if is_symbolic(d) else d for d in new_sizes], np.int64))],
            )
        return self.op("Reshape", [x, self.shape(new_sizes)])

    def _broadcast_in_dim(self, vals, in_avals, out_aval, shape, broadcast_dimensions, **_):
        x = self.runtime(vals[0], in_avals[0])
        missing = [i for i in range(len(shape)) if i not in broadcast_dimensions]
        if missing:
            x = self.op("Unsqueeze", [x, self.const(np.array(missing, np.int64))])
        src = list(in_avals[0].shape)
        full = [
            src[broadcast_dimensions.index(i)] if i in broadcast_dimensions else 1 for i in range(len(shape))
        ]
        if all(a is b or a == b for a, b in zip(full, shape, strict=True)):
            return x
        return self.op("Expand", [x, self.shape(shape)])

    def _transpose(self, vals, in_avals, out_aval, permutation, **_):
        return self.op("Transpose", [self.runtime(vals[0], in_avals[0])], perm=list(permutation))

    def _squeeze(self, vals, in_avals, out_aval, dimensions, **_):
        return self.op(
            "Squeeze", [self.runtime(vals[0], in_avals[0]), self.const(np.array(dimensions, np.int64))]
        )

    def _concatenate(self, vals, in_avals, out_aval, dimension, **_):
        out = self.op(
            "Concat", [self.runtime(v, a) for v, a in zip(vals, in_avals, strict=True)], axis=dimension
        )
        self._concats[out] = (dimension, list(zip(vals, in_avals, strict=True)))
        return out

    def _split(self, vals, in_avals, out_aval, sizes, axis, **_):
        """The transpose of a concatenation (a VJP through one): one Slice per part, so parts nobody
        reads (cotangents of inputs the VJP does not ask for) are pruned."""
        x = self.runtime(vals[0], in_avals[0])
        bounds = np.cumsum([0, *sizes])
        if x in self._dense and axis == len(in_avals[0].shape) - 1:
            # split(x @ W) along W's columns -> x @ W[:, part]: the pruned parts cost nothing (in a
            # VJP through a dense layer on a concatenation, only the cotangent asked for is computed).
            lhs, w = self._dense[x]
            return [
                self.op("MatMul", [lhs, self.const(np.ascontiguousarray(w[:, bounds[k] : bounds[k + 1]]))])
                for k in range(len(sizes))
            ]
        return [
            self.op(
                "Slice",
                [
                    x,
                    self.const(np.array([bounds[k]], np.int64)),
                    self.const(np.array([bounds[k + 1]], np.int64)),
                    self.const(np.array([axis], np.int64)),
                ],
            )
            for k in range(len(sizes))
        ]

    def _reduce(self, op_type, vals, in_avals, axes):
        x = self.runtime(vals[0], in_avals[0])
        if op_type == "ReduceSum" or self.opset >= 18:  # axes became an input in opset 13 / 18
            return self.op(op_type, [x, self.const(np.array(axes, np.int64))], keepdims=0)
        return self.op(op_type, [x], axes=list(axes), keepdims=0)

    def _reduce_sum(self, vals, in_avals, out_aval, axes, **_):
        return self._reduce("ReduceSum", vals, in_avals, axes)

    def _reduce_max(self, vals, in_avals, out_aval, axes, **_):
        return self._reduce("ReduceMax", vals, in_avals, axes)

    def _reduce_min(self, vals, in_avals, out_aval, axes, **_):
        return self._reduce("ReduceMin", vals, in_avals, axes)

    def _slice(self, vals, in_avals, out_aval, start_indices, limit_indices, strides=None, **_):
        axes = list(range(len(start_indices)))
        ins = [
            self.runtime(vals[0], in_avals[0]),
            self.const(np.array(start_indices, np.int64)),
            self.const(np.array(limit_indices, np.int64)),
            self.const(np.array(axes, np.int64)),
        ]
        if strides is not None:
            ins.append(self.const(np.array(strides, np.int64)))
        return self.op("Slice", ins)

    def _dot_general(self, vals, in_avals, out_aval, dimension_numbers, **_):
        (lc, rc), (lb, rb) = dimension_numbers
        lhs, rhs = vals
        la, ra = in_avals
        # concat(x_1..x_n) @ W along the contracted axis -> sum_i x_i @ W_i (constant parts fold,
        # repeated parts are shared by the node cache).
        if (
            isinstance(lhs, str)
            and not isinstance(rhs, str)
            and len(lc) == 1
            and not lb
            and self._concats.get(lhs, (None,))[0] == lc[0]
        ):
            parts, start, acc = self._concats[lhs][1], 0, None
            for v, a in parts:
                width = int(a.shape[lc[0]])
                w = np.take(rhs, np.arange(start, start + width), axis=rc[0])
                start += width
                if isinstance(v, str):
                    term = self._dot_general(
                        [v, w], [a, _Aval(w.shape, w.dtype)], out_aval, dimension_numbers
                    )
                else:
                    term = np.einsum(einsum_equation(v.ndim, w.ndim, dimension_numbers), v, w)
                acc = term if acc is None else (self._add_folded(acc, term, out_aval))
            return self.runtime(acc, out_aval)
        if (
            not lb
            and not rb
            and len(lc) == 1
            and lc[0] == len(la.shape) - 1
            and len(rc) == 1
            and rc[0] == 0
            and len(ra.shape) == 2
        ):
            return self.op("MatMul", [self.runtime(lhs, la), self.runtime(rhs, ra)])
        if (
            not isinstance(rhs, str)
            and not lb
            and len(lc) == 1
            and lc[0] == len(la.shape) - 1
            and len(rc) == 1
        ):
            w = np.moveaxis(rhs, rc[0], 0)  # constant right side: put its contracted axis first
            if w.ndim == 2:
                x = self.runtime(lhs, la)
                out = self.op("MatMul", [x, self.const(w)])
                self._dense[out] = (x, w)
                return out
        eq = einsum_equation(len(la.shape), len(ra.shape), dimension_numbers)  # the general case
        return self.op("Einsum", [self.runtime(lhs, la), self.runtime(rhs, ra)], equation=eq)

    def _add_folded(self, a, b, aval):
        if not isinstance(a, str) and not isinstance(b, str):
            return np.asarray(a) + np.asarray(b)
        return self.op("Add", [self.operand(a, aval, True), self.operand(b, aval, True)])

    def _conv_general_dilated(
        self,
        vals,
        in_avals,
        out_aval,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
        **_,
    ):
        if any(d != 1 for d in lhs_dilation) or batch_group_count != 1:
            raise NotImplementedError("transposed or batch-grouped convolution")
        lhs_spec, rhs_spec, out_spec = dimension_numbers
        x = self.op("Transpose", [self.runtime(vals[0], in_avals[0])], perm=list(lhs_spec))  # -> NCHW
        if isinstance(vals[1], str):
            k = self.op("Transpose", [vals[1]], perm=list(rhs_spec))
        else:
            k = self.const(np.transpose(vals[1], rhs_spec))  # -> OIHW
        y = self.op(
            "Conv",
            [x, k],
            strides=list(window_strides),
            dilations=list(rhs_dilation),
            pads=[p[0] for p in padding] + [p[1] for p in padding],
            group=feature_group_count,
            kernel_shape=[int(in_avals[1].shape[i]) for i in rhs_spec[2:]],
        )
        return self.op("Transpose", [y], perm=[int(i) for i in np.argsort(out_spec)])

    def _gather(self, vals, in_avals, out_aval, dimension_numbers, slice_sizes, **_):
        """A take along one axis (embedding lookups, x[:, i]) -> ONNX Gather, its output axes then moved
        to where JAX puts them; a window at a constant start (x[:, i:j] under a symbolic batch) -> Slice."""
        dn = dimension_numbers
        operand, idx = in_avals
        axis = dn.start_index_map[0] if len(dn.start_index_map) == 1 else None
        if (
            axis is not None
            and not dn.collapsed_slice_dims
            and not isinstance(vals[1], str)
            and idx.shape == (1,)
            and tuple(dn.offset_dims) == tuple(range(len(operand.shape)))
        ):
            size, start, dim = int(slice_sizes[axis]), int(vals[1][0]), operand.shape[axis]
            if is_symbolic(dim) and start != 0:
                raise NotImplementedError("a window at a nonzero start along the dynamic batch")
            start = (
                start if is_symbolic(dim) else int(np.clip(start, 0, int(dim) - size))
            )  # JAX clamps the window
            return self.op(
                "Slice",
                [
                    self.runtime(vals[0], operand),
                    self.const(np.array([start], np.int64)),
                    self.const(np.array([start + size], np.int64)),
                    self.const(np.array([axis], np.int64)),
                ],
            )
        if not (
            axis is not None
            and tuple(dn.collapsed_slice_dims) == (axis,)
            and not dn.operand_batching_dims
            and idx.shape[-1] == 1
            and slice_sizes[axis] == 1
            and all(s == operand.shape[i] for i, s in enumerate(slice_sizes) if i != axis)
        ):
            raise NotImplementedError(f"gather with dimension numbers {dn}")
        nb = len(idx.shape) - 1
        indices = self.op("Squeeze", [self.runtime(vals[1], idx), self.const(np.array([nb], np.int64))])
        y = self.op("Gather", [self.runtime(vals[0], operand), indices], axis=int(axis))
        kept = [f"d{i}" for i in range(len(operand.shape)) if i != axis]
        onnx_order = kept[:axis] + [f"i{k}" for k in range(nb)] + kept[axis:]
        batch = iter(f"i{k}" for k in range(nb))
        offset = iter(kept)
        jax_order = [next(offset) if k in dn.offset_dims else next(batch) for k in range(len(out_aval.shape))]
        perm = [onnx_order.index(a) for a in jax_order]
        return y if perm == sorted(perm) else self.op("Transpose", [y], perm=perm)
