"""Patches of a strided convolution and their adjoint: im2col and col2im, differentiable.

Geometry (kernels/cpu/patches_cpu.h): an image [B, C, H, W] and a convolution of kernel k, stride s,
padding p over it, with output grid h x w, h = (H + 2p - k) // s + 1. Tap (ky, kx) of grid point (oy, ox)
reads pixel (oy s - p + ky, ox s - p + kx), zero outside the image.

    im2col(image, k, s, p)                   -> patches [B h w, C k k]: row (b h + oy) w + ox, column (c k + ky) k + kx
    col2im(patches, (B, C, H, W), k, s, p)   -> image [B, C, H, W]: each pixel the sum of the patch entries reading it

col2im is the adjoint of im2col, so each is the other's backward. A convolution is im2col then
patches @ weight.reshape(C_out, C k k).T; a transposed convolution of the same k, s, p is
rows @ weight.reshape(C_in, C_out k k) then col2im (jointvae_fast/layers/patch_deconv.py).

The compiled ops (CPU, float32/float64) run where loaded; elsewhere the composite twins (F.unfold / F.fold),
which compute the same values. `channels_last` asks col2im for an NHWC-strided image.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from . import fused

_BOUND = False


def _patch_op_ok(t: torch.Tensor) -> bool:
    """The compiled op covers t: library loaded, CPU, float32/float64."""
    return fused._ensure_loaded() and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def patches_available(device: torch.device | str = "cpu") -> bool:
    """Whether the compiled patch ops run on this device (CPU with the library loaded)."""
    return torch.device(device).type == "cpu" and fused._ensure_loaded()


def grid_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output grid length along one axis: (size + 2 padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def composite_im2col(image: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """im2col from F.unfold ([B, C k k, L] -> [B L, C k k])."""
    cols = F.unfold(image, kernel, padding=padding, stride=stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def composite_col2im(patches: torch.Tensor, image_size: Sequence[int], kernel: int, stride: int, padding: int,
                     channels_last: bool = False) -> torch.Tensor:
    """col2im from F.fold."""
    B, C, H, W = image_size
    L = grid_size(H, kernel, stride, padding) * grid_size(W, kernel, stride, padding)
    cols = patches.reshape(B, L, patches.shape[1]).transpose(1, 2)
    image = F.fold(cols, (H, W), kernel, padding=padding, stride=stride)
    return image.contiguous(memory_format=torch.channels_last) if channels_last else image


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _bind() -> None:
    """Autograd and fake kernels of the compiled ops (once, after the library loaded)."""
    global _BOUND
    if _BOUND:
        return
    torch.library.register_fake("jointvae::im2col")(_im2col_fake)
    torch.library.register_fake("jointvae::col2im")(_col2im_fake)
    torch.library.register_autograd("jointvae::im2col", _im2col_backward, setup_context=_im2col_setup)
    torch.library.register_autograd("jointvae::col2im", _col2im_backward, setup_context=_col2im_setup)
    _BOUND = True


def _im2col_fake(image, kernel, stride, padding):
    B, C, H, W = image.shape
    rows = B * grid_size(H, kernel, stride, padding) * grid_size(W, kernel, stride, padding)
    return image.new_empty((rows, C * kernel * kernel))


def _col2im_fake(patches, image_size, kernel, stride, padding, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return patches.new_empty(tuple(image_size)).contiguous(memory_format=fmt)


def _im2col_setup(ctx, inputs, output):
    image, ctx.kernel, ctx.stride, ctx.padding = inputs
    ctx.image_size, ctx.channels_last = tuple(image.shape), _is_channels_last(image)


def _im2col_backward(ctx, grad):
    return (torch.ops.jointvae.col2im(grad.contiguous(), ctx.image_size, ctx.kernel, ctx.stride, ctx.padding,
                                      ctx.channels_last), None, None, None)


def _col2im_setup(ctx, inputs, output):
    _, _, ctx.kernel, ctx.stride, ctx.padding, _ = inputs


def _col2im_backward(ctx, grad):
    return torch.ops.jointvae.im2col(grad, ctx.kernel, ctx.stride, ctx.padding), None, None, None, None, None


def _check_geometry(kernel: int, stride: int, padding: int, H: int, W: int) -> None:
    for name, v, low in (("kernel", kernel, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    if H + 2 * padding < kernel or W + 2 * padding < kernel:
        raise ValueError(f"image {H}x{W} with padding {padding} is smaller than the kernel {kernel}")


def im2col(image: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """patches [B h w, C k k] of image [B, C, H, W] (any strides); differentiable (backward: col2im)."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise ValueError(f"image must be a [B, C, H, W] tensor, got {getattr(image, 'shape', type(image))}")
    _check_geometry(kernel, stride, padding, image.shape[2], image.shape[3])
    if not _patch_op_ok(image):
        return composite_im2col(image, kernel, stride, padding)
    _bind()
    return torch.ops.jointvae.im2col(image, kernel, stride, padding)


def col2im(patches: torch.Tensor, image_size: Sequence[int], kernel: int, stride: int, padding: int,
           channels_last: bool = False) -> torch.Tensor:
    """image [B, C, H, W] = the adjoint of im2col applied to patches [B h w, C k k]; differentiable."""
    if len(image_size) != 4:
        raise ValueError(f"image_size must be (B, C, H, W), got {tuple(image_size)}")
    B, C, H, W = (int(v) for v in image_size)
    _check_geometry(kernel, stride, padding, H, W)
    rows = B * grid_size(H, kernel, stride, padding) * grid_size(W, kernel, stride, padding)
    if not isinstance(patches, torch.Tensor) or tuple(patches.shape) != (rows, C * kernel * kernel):
        raise ValueError(f"patches must be [{rows}, {C * kernel * kernel}] for image {(B, C, H, W)}, "
                         f"got {tuple(getattr(patches, 'shape', ()))}")
    if not _patch_op_ok(patches):
        return composite_col2im(patches, (B, C, H, W), kernel, stride, padding, channels_last)
    _bind()
    return torch.ops.jointvae.col2im(patches, [B, C, H, W], kernel, stride, padding, bool(channels_last))
