// Patches of a strided convolution (im2col) and their adjoint (col2im), on the CPU. No torch.
//
// Geometry: an image [B, C, H, W] (any strides) and a convolution of kernel k, stride s, padding p over it,
// whose output grid is h x w with h = (H + 2p - k) / s + 1 (w likewise). Tap (ky, kx) of grid point (oy, ox)
// reads image pixel
//     (iy, ix) = (oy s - p + ky, ox s - p + kx)          (zero outside the image).
// patches [B h w, C k k] (contiguous): row (b oy + ...) = ((b h + oy) w + ox), column (c k + ky) k + kx.
// im2col writes patches from an image; col2im is its adjoint: image[b, c, iy, ix] = the sum of the patch
// entries that read (b, c, iy, ix). So a convolution is im2col then a matrix product with the weight
// [C_out, C k k], and a transposed convolution (same k, s, p) a matrix product then col2im.
#pragma once
#include <stdint.h>

namespace jointvae {
namespace cpu {

struct PatchGeometry {
  int64_t B, C, H, W;  // image
  int64_t k, s, p;     // kernel, stride, padding
  int64_t h, w;        // output grid
};

struct ImageStrides {  // in elements
  int64_t b, c, y, x;
};

// The grid coordinate and tap that read image coordinate i along one axis: i = o s - p + t.
inline int64_t patch_origin(int64_t o, int64_t s, int64_t p) { return o * s - p; }

// Rows [r0, r1) of patches from image.
template <typename T>
void im2col_rows(const T* image, const ImageStrides& st, const PatchGeometry& g, T* patches, int64_t r0,
                 int64_t r1);

// Image rows q = b H + iy in [q0, q1) of image (every channel and column): the sums over patches.
template <typename T>
void col2im_rows(const T* patches, const PatchGeometry& g, T* image, const ImageStrides& st, int64_t q0,
                 int64_t q1);

}  // namespace cpu
}  // namespace jointvae
