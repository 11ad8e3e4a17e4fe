// The patch ops (jointvae::im2col, jointvae::col2im) over the CPU loops of kernels/cpu/patches_cpu.h.
// CPU only: on CUDA the layers that use them run torch's own convolutions. Autograd and fake kernels are
// registered from Python (jointvae_fast/ops/patches.py): each op's backward is the other op.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../cpu/patches_cpu.h"

namespace jointvae {
namespace torch_ops {
namespace {

using at::Tensor;

cpu::PatchGeometry geometry(at::IntArrayRef image_size, int64_t kernel, int64_t stride, int64_t padding) {
  TORCH_CHECK(image_size.size() == 4, "image must be [B, C, H, W], got ", image_size.size(), " dims");
  TORCH_CHECK(kernel >= 1 && stride >= 1 && padding >= 0, "need kernel >= 1, stride >= 1, padding >= 0, got ",
              kernel, ", ", stride, ", ", padding);
  const int64_t B = image_size[0], C = image_size[1], H = image_size[2], W = image_size[3];
  TORCH_CHECK(B >= 0 && C >= 1 && H + 2 * padding >= kernel && W + 2 * padding >= kernel,
              "image [", B, ", ", C, ", ", H, ", ", W, "] is smaller than the kernel ", kernel, " with padding ",
              padding);
  return {B, C, H, W, kernel, stride, padding, (H + 2 * padding - kernel) / stride + 1,
          (W + 2 * padding - kernel) / stride + 1};
}

cpu::ImageStrides strides_of(const Tensor& image) {
  return {image.stride(0), image.stride(1), image.stride(2), image.stride(3)};
}

int64_t grain(int64_t work_per_item) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(work_per_item, 1)); }

Tensor im2col_cpu(const Tensor& image, int64_t kernel, int64_t stride, int64_t padding) {
  TORCH_CHECK(image.dim() == 4, "im2col: image must be [B, C, H, W], got ", image.dim(), " dims");
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "im2col: image must be float32 or float64, got ", image.scalar_type());
  const cpu::PatchGeometry g = geometry(image.sizes(), kernel, stride, padding);
  const int64_t rows = g.B * g.h * g.w, width = g.C * kernel * kernel;
  Tensor patches = at::empty({rows, width}, image.options());
  if (rows == 0) return patches;
  const cpu::ImageStrides st = strides_of(image);
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col", [&] {
    const scalar_t* src = image.const_data_ptr<scalar_t>();
    scalar_t* dst = patches.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(width), [&](int64_t r0, int64_t r1) { cpu::im2col_rows(src, st, g, dst, r0, r1); });
  });
  return patches;
}

Tensor col2im_cpu(const Tensor& patches, at::IntArrayRef image_size, int64_t kernel, int64_t stride,
                  int64_t padding, bool channels_last) {
  TORCH_CHECK(patches.scalar_type() == at::kFloat || patches.scalar_type() == at::kDouble,
              "col2im: patches must be float32 or float64, got ", patches.scalar_type());
  const cpu::PatchGeometry g = geometry(image_size, kernel, stride, padding);
  const int64_t rows = g.B * g.h * g.w, width = g.C * kernel * kernel;
  TORCH_CHECK(patches.dim() == 2 && patches.size(0) == rows && patches.size(1) == width, "col2im: patches must be [",
              rows, ", ", width, "], got ", patches.sizes());
  Tensor image = at::empty(image_size, patches.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                                      : at::MemoryFormat::Contiguous));
  if (g.B == 0) return image;
  const Tensor p = patches.contiguous();
  const cpu::ImageStrides st = strides_of(image);
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "col2im", [&] {
    const scalar_t* src = p.const_data_ptr<scalar_t>();
    scalar_t* dst = image.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, g.B * g.H, grain(g.W * g.C * kernel), [&](int64_t q0, int64_t q1) {
      cpu::col2im_rows(src, g, dst, st, q0, q1);
    });
  });
  return image;
}

}  // namespace
}  // namespace torch_ops
}  // namespace jointvae

TORCH_LIBRARY_FRAGMENT(jointvae, m) {
  m.def("im2col(Tensor image, int kernel, int stride, int padding) -> Tensor");
  m.def("col2im(Tensor patches, int[] image_size, int kernel, int stride, int padding, bool channels_last) -> Tensor");
}

TORCH_LIBRARY_IMPL(jointvae, CPU, m) {
  m.impl("im2col", &jointvae::torch_ops::im2col_cpu);
  m.impl("col2im", &jointvae::torch_ops::col2im_cpu);
}
