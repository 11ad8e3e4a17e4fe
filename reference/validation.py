"""Input validation shared by the reference's public functions.

Every check raises ValueError naming the argument and the value (or shape) it got.
"""
import math
import numbers

import numpy as np

UINT64_LIMIT = 1 << 64


def _describe(a):
    shape = getattr(a, "shape", None)
    if shape is not None:
        return f"array of shape {tuple(shape)} and dtype {getattr(a, 'dtype', '?')}"
    return repr(a)


def as_float_array(name, a, xp, ndim=None):
    """a as a float64 array of namespace xp; ValueError if it is not numeric or has the wrong rank."""
    if a is None:
        raise ValueError(f"{name} must be an array, got None")
    try:
        arr = xp.asarray(a)
    except Exception as exc:  # noqa: BLE001 -- re-raised with the argument named
        raise ValueError(f"{name} must be a numeric array, got {a!r}") from exc
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real numeric array, got {_describe(arr)}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got {_describe(arr)}")
    return arr.astype(xp.float64, copy=False)


def check_finite(name, a, xp):
    """ValueError if the float array a has a NaN or an infinity."""
    if a.size and not bool(xp.all(xp.isfinite(a))):
        bad = a[~xp.isfinite(a)].ravel()[0]
        raise ValueError(f"{name} must be finite, got a value {float(bad)!r} in {_describe(a)}")


def check_same_shape(name, a, ref_name, ref):
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got shape {tuple(a.shape)}"
        )


def check_batch(name, a, batch):
    if a.shape[0] != batch:
        raise ValueError(f"{name} must have batch size {batch}, got shape {tuple(a.shape)}")


def check_disc_dims(disc_dims, width=None):
    """disc_dims as a tuple of ints >= 2 that sum to `width` (the logits' last dimension) when given."""
    if disc_dims is None:
        disc_dims = ()
    try:
        dims = tuple(disc_dims)
    except TypeError as exc:
        raise ValueError(f"disc_dims must be a sequence of ints >= 2, got {disc_dims!r}") from exc
    out = []
    for k in dims:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise ValueError(f"disc_dims must contain ints, got {disc_dims!r} (entry {k!r})")
        if k < 2:
            raise ValueError(f"disc_dims entries must be >= 2 classes, got {disc_dims!r} (entry {k!r})")
        out.append(int(k))
    if width is not None and sum(out) != width:
        raise ValueError(
            f"disc_dims must sum to the logits width {width}, got {disc_dims!r} (sum {sum(out)})"
        )
    return tuple(out)


def check_positive(name, value):
    """A finite real number > 0 (tau, num_iters)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number > 0, got {value!r}")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_real(name, value, minimum=None):
    """A finite real number (>= minimum when given)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


def check_uint64(name, value):
    """An int in [0, 2**64) (Philox seeds and offsets)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    if not 0 <= int(value) < UINT64_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**64), got {value!r}")
    return int(value)


def check_count(name, value):
    """An int >= 0 (sizes)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def check_capacity_spec(name, spec):
    """(c_min, c_max, num_iters, gamma) with finite reals, num_iters > 0; or None."""
    if spec is None:
        return None
    try:
        c_min, c_max, num_iters, gamma = spec
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be (c_min, c_max, num_iters, gamma) or None, got {spec!r}") from exc
    return (
        check_real(f"{name}[0] (c_min)", c_min),
        check_real(f"{name}[1] (c_max)", c_max),
        check_positive(f"{name}[2] (num_iters)", num_iters),
        check_real(f"{name}[3] (gamma)", gamma),
    )
