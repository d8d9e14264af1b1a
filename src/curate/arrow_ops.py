"""The few Arrow compute kernels that every batch of a streaming job calls, by name.

Importing `pyarrow.compute` builds a Python wrapper for each of its several hundred kernels:
~0.03 CPU-s in every process, a twentieth of a small `importance fit` + `score importance` pair
(docs/benchmarks.md, stop 27). These helpers call the same kernels with the same default options
through `call_function`, which needs only the compiled module. Modules off the hot path keep
using `pyarrow.compute`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

try:  # the compiled module behind pyarrow.compute (the public names are re-exports of these)
    from pyarrow._compute import CastOptions, call_function
except ImportError:  # pragma: no cover - a pyarrow that moved them: the public module has them
    from pyarrow.compute import CastOptions, call_function

ArrowValues = Any  # pa.Array | pa.ChunkedArray (and Scalar where a kernel takes one)


def binary_length(values: ArrowValues) -> ArrowValues:
    """Bytes per value (null stays null)."""
    return call_function("binary_length", [values])


def total(values: ArrowValues) -> int:
    """The sum of the non-null values, 0 when there are none (pc.sum's default, then `or 0`)."""
    return int(call_function("sum", [values]).as_py() or 0)


def _operand(value: Any) -> Any:
    # A Python int as a typed scalar: inferring its type makes pyarrow try pandas and import
    # dateutil (~3 ms in every process); int64 is what inference would give it.
    return (
        pa.scalar(value, type=pa.int64()) if isinstance(value, int) and not isinstance(value, bool) else value
    )


def equal(left: ArrowValues, right: Any) -> ArrowValues:
    return call_function("equal", [left, _operand(right)])


def greater(left: ArrowValues, right: Any) -> ArrowValues:
    return call_function("greater", [left, _operand(right)])


def invert(values: ArrowValues) -> ArrowValues:
    return call_function("invert", [values])


def fill_null(values: ArrowValues, fill_value: Any) -> ArrowValues:
    """Nulls replaced by `fill_value`, cast to the values' type (as pc.fill_null does)."""
    if not isinstance(fill_value, pa.Scalar):
        fill_value = pa.scalar(fill_value, type=values.type)
    return call_function("coalesce", [values, fill_value])


def cast(values: ArrowValues, target_type: pa.DataType) -> ArrowValues:
    """A safe cast (overflow and truncation raise), pc.cast's default."""
    return call_function("cast", [values], CastOptions.safe(target_type))
