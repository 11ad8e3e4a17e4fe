"""Capacity schedule and the capacity term of the objective (Eq. 7 of the paper)."""
from .array_namespace import array_namespace
from .validation import as_float_array, check_positive, check_real


def capacity(step, c_min, c_max, num_iters, cap=None):
    """C(step) = min(c_min + (c_max - c_min) * step / num_iters, c_max), and <= cap when given -> float.

    The discrete capacity passes cap = sum_i log K_i.
    """
    step = check_real("step", step, minimum=0)
    c_min = check_real("c_min", c_min)
    c_max = check_real("c_max", c_max)
    num_iters = check_positive("num_iters", num_iters)
    c = min(c_min + (c_max - c_min) * step / num_iters, c_max)
    if cap is not None:
        c = min(c, check_real("cap", cap))
    return c


def capacity_loss(kl, c, gamma):
    """gamma * |kl - c|; kl a scalar or array (elementwise), c and gamma real numbers."""
    xp = array_namespace(kl)
    kl = as_float_array("kl", kl, xp)
    c = check_real("c", c)
    gamma = check_real("gamma", gamma)
    return gamma * xp.abs(kl - c)


def capacity_loss_vjp(kl, c, gamma, grad=1.0):
    """Gradient w.r.t. kl -> (grad * gamma * sign(kl - c),); the subgradient at kl == c is 0."""
    xp = array_namespace(kl, grad)
    kl = as_float_array("kl", kl, xp)
    c = check_real("c", c)
    gamma = check_real("gamma", gamma)
    grad = as_float_array("grad", grad, xp)
    return (grad * gamma * xp.sign(kl - c),)
