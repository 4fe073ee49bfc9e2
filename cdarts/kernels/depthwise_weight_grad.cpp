// Weight gradient of a depthwise 2-D convolution on channels-last (N, H, W, C) tensors.
//
//   dW[c, i, j] = sum over n, oh, ow of  g[n, oh, ow, c] * x[n, oh*S - P + i*D, ow*S - P + j*D, c]
//
// (taps outside the input are zero padding and contribute nothing). oneDNN's kernel for this is
// slow on CPUs for kernels of 5 or more taps a side and for dilated kernels; this one keeps the
// K*K partial sums of a block of channels in vector registers while it walks the output pixels
// once: per output pixel one load of g and, per tap, one load of x and one fused multiply-add.
//
// Built at run time by cdarts/kernels/native_library.py with -O3 -march=native -fopenmp and called
// through ctypes; its OpenMP runtime is the libgomp torch has already loaded (same soname), so
// it shares torch's thread pool.

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

struct Geometry {
  int64_t rows;  // N * OH: the (n, oh) output rows, split among the threads
  int H, W, C, OH, OW, stride, padding, dilation;
  int64_t x_n, x_h, x_w;  // element strides of x (its channel stride is 1)
  int64_t g_n, g_h, g_w;  // element strides of g (its channel stride is 1)
};

// Accumulates the taps of channels [c0, c0 + VL) over output rows [row0, row1) into
// partial[(tap) * C + c] (K*K by C, this thread's own buffer).
template <typename T, int K, int VL>
void accumulate_block(const T* x, const T* g, T* partial, const Geometry& geo, int64_t row0, int64_t row1, int c0) {
  T acc[K * K][VL];
  for (int t = 0; t < K * K; ++t)
    for (int v = 0; v < VL; ++v) acc[t][v] = 0;
  const int S = geo.stride, P = geo.padding, D = geo.dilation;
  // Output columns whose every tap lies inside the input: no bounds checks there.
  int ow_first = (P + S - 1) / S;
  int ow_last = geo.W - 1 - (K - 1) * D + P >= 0 ? (geo.W - 1 - (K - 1) * D + P) / S : -1;
  if (ow_last > geo.OW - 1) ow_last = geo.OW - 1;
  for (int64_t row = row0; row < row1; ++row) {
    const int64_t n = row / geo.OH;
    const int oh = static_cast<int>(row % geo.OH);
    const T* x_image = x + n * geo.x_n + c0;
    const T* g_row = g + n * geo.g_n + oh * geo.g_h + c0;
    const int ih0 = oh * S - P;
    for (int ow = 0; ow < geo.OW; ++ow) {
      T gv[VL];
      const T* gp = g_row + ow * geo.g_w;
      for (int v = 0; v < VL; ++v) gv[v] = gp[v];
      const int iw0 = ow * S - P;
      const bool inside = ow >= ow_first && ow <= ow_last;
      for (int i = 0; i < K; ++i) {
        const int ih = ih0 + i * D;
        if (ih < 0 || ih >= geo.H) continue;
        const T* x_row = x_image + ih * geo.x_h;
        if (inside) {
          for (int j = 0; j < K; ++j) {
            const T* xp = x_row + (iw0 + j * D) * geo.x_w;
            for (int v = 0; v < VL; ++v) acc[i * K + j][v] += gv[v] * xp[v];
          }
        } else {
          for (int j = 0; j < K; ++j) {
            const int iw = iw0 + j * D;
            if (iw < 0 || iw >= geo.W) continue;
            const T* xp = x_row + iw * geo.x_w;
            for (int v = 0; v < VL; ++v) acc[i * K + j][v] += gv[v] * xp[v];
          }
        }
      }
    }
  }
  for (int t = 0; t < K * K; ++t)
    for (int v = 0; v < VL; ++v) partial[static_cast<int64_t>(t) * geo.C + c0 + v] += acc[t][v];
}

template <typename T, int K>
void weight_grad(const T* x, const T* g, T* grad_weight, const Geometry& geo, int threads) {
  // Channel blocks of 16, then 8, 4 and 1 for the rest of an awkward width (36 = 16 + 16 + 4).
  std::vector<T> partials(static_cast<size_t>(threads) * K * K * geo.C, T(0));
#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t row0 = geo.rows * tid / team, row1 = geo.rows * (tid + 1) / team;
    T* mine = partials.data() + static_cast<size_t>(tid) * K * K * geo.C;
    int c0 = 0;
    for (; c0 + 16 <= geo.C; c0 += 16) accumulate_block<T, K, 16>(x, g, mine, geo, row0, row1, c0);
    for (; c0 + 8 <= geo.C; c0 += 8) accumulate_block<T, K, 8>(x, g, mine, geo, row0, row1, c0);
    for (; c0 + 4 <= geo.C; c0 += 4) accumulate_block<T, K, 4>(x, g, mine, geo, row0, row1, c0);
    for (; c0 < geo.C; ++c0) accumulate_block<T, K, 1>(x, g, mine, geo, row0, row1, c0);
  }
  // Sum the threads' partials in thread order (deterministic for a fixed thread count) into
  // the (C, 1, K, K) contiguous weight layout.
  for (int c = 0; c < geo.C; ++c)
    for (int t = 0; t < K * K; ++t) {
      T sum = 0;
      for (int th = 0; th < threads; ++th) sum += partials[(static_cast<size_t>(th) * K * K + t) * geo.C + c];
      grad_weight[static_cast<int64_t>(c) * K * K + t] = sum;
    }
}

template <typename T>
int dispatch(const T* x, const T* g, T* grad_weight, const int64_t* shape, const int64_t* x_strides,
             const int64_t* g_strides, int kernel_size, int stride, int padding, int dilation, int threads) {
  // shape: N, H, W, C, OH, OW; strides: (n, h, w) in elements.
  Geometry geo{shape[0] * shape[4],
               static_cast<int>(shape[1]), static_cast<int>(shape[2]), static_cast<int>(shape[3]),
               static_cast<int>(shape[4]), static_cast<int>(shape[5]), stride, padding, dilation,
               x_strides[0], x_strides[1], x_strides[2], g_strides[0], g_strides[1], g_strides[2]};
  if (threads < 1) threads = 1;
  switch (kernel_size) {
    case 3: weight_grad<T, 3>(x, g, grad_weight, geo, threads); return 0;
    case 5: weight_grad<T, 5>(x, g, grad_weight, geo, threads); return 0;
    case 7: weight_grad<T, 7>(x, g, grad_weight, geo, threads); return 0;
    default: return 1;  // unsupported kernel size: the caller falls back
  }
}

}  // namespace

extern "C" int cdarts_depthwise_weight_grad_f32(const float* x, const float* g, float* grad_weight,
                                                const int64_t* shape, const int64_t* x_strides,
                                                const int64_t* g_strides, int kernel_size, int stride,
                                                int padding, int dilation, int threads) {
  return dispatch<float>(x, g, grad_weight, shape, x_strides, g_strides, kernel_size, stride, padding, dilation,
                         threads);
}

extern "C" int cdarts_depthwise_weight_grad_f64(const double* x, const double* g, double* grad_weight,
                                                const int64_t* shape, const int64_t* x_strides,
                                                const int64_t* g_strides, int kernel_size, int stride,
                                                int padding, int dilation, int threads) {
  return dispatch<double>(x, g, grad_weight, shape, x_strides, g_strides, kernel_size, stride, padding, dilation,
                          threads);
}
