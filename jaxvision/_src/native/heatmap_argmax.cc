// First maximum of each heatmap channel, with the quarter offset: an XLA FFI handler for
// the CPU (jaxvision.keypoints.heatmap_argmax). Compiled on first use by
// jaxvision/_src/native/loader.py; the XLA path gives the same results everywhere else.
//
// heatmaps [..., H, W, K] float32, row-major ->
//   x, y [..., K] int32: the first maximum in row-major (y, x) order, as np.argmax on the
//        flattened map (H - 1, W - 1 where the map holds NaN, as the XLA path);
//   peak [..., K] float32: the maximum (NaN where the map holds NaN);
//   keypoints [..., K, 2] float32: the argmax pixel's centre (x + 0.5, y + 0.5), plus
//        0.25 * sign of the central differences at (x, y) (0 on the border) where the
//        attribute `quarter` is true: heatmap_argmax's result itself, so that a jitted
//        decode is this one call (an executable of one FFI call runs on the calling
//        thread; any XLA op after it sends the call to another thread, about 0.3 ms here).
//
// One pass over each map, in bands of rows that fit in L1: per column (w, k) of the
// [H, W * K] block its maximum (and its sum, which flags NaN), in SIMD registers for a tile
// of columns at a time; then, per channel, the peak over the columns, and the first row
// holding it in the columns that reach it (in cache: the map was just read), the first in
// row-major order kept.

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float VecF __attribute__((vector_size(4 * kLanes)));
constexpr int kTile = 8;  // vectors per tile

inline VecF Load(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Maximum and sum over rows [i0, i1) of columns [j, j + kLanes * tiles) of one map, merged
// into best / sum (set from row i0 when i0 == 0). The sum is NaN where the column holds NaN
// (or both infinities: the caller checks those columns).
template <int tiles>
inline void ColumnTile(const float* m, int64_t i0, int64_t i1, int64_t wk, int64_t j,
                       float* best, float* sum, int64_t ahead) {
  VecF bv[tiles], bs[tiles];
  const float* src = i0 == 0 ? m + j : nullptr;
  for (int t = 0; t < tiles; ++t) {
    bv[t] = Load((src ? src : best + j) + kLanes * t);
    bs[t] = src ? bv[t] : Load(sum + j + kLanes * t);
  }
  for (int64_t i = i0 == 0 ? 1 : i0; i < i1; ++i) {
    const float* line = m + i * wk + j;
    for (int t = 0; t < tiles; ++t) {
      const VecF v = Load(line + kLanes * t);
      __builtin_prefetch(line + kLanes * t + ahead);
      bv[t] = v > bv[t] ? v : bv[t];
      bs[t] += v;
    }
  }
  for (int t = 0; t < tiles; ++t) {
    std::memcpy(best + j + kLanes * t, &bv[t], sizeof(VecF));
    std::memcpy(sum + j + kLanes * t, &bs[t], sizeof(VecF));
  }
}

float QuarterStep(float hi, float lo) {
  const float d = hi - lo;
  if (d > 0) return 0.25f;
  if (d < 0) return -0.25f;
  return d == d ? 0.0f : std::numeric_limits<float>::quiet_NaN();
}

// True where column j of the [H, W * K] block holds NaN.
bool ColumnHasNan(const float* m, int64_t h, int64_t wk, int64_t j) {
  for (int64_t i = 0; i < h; ++i) {
    if (std::isnan(m[i * wk + j])) return true;
  }
  return false;
}

// Per-channel working memory of DecodeMap.
struct Channels {
  explicit Channels(int64_t k) : peak(k), flag(k), first(k), count(k) {}
  std::vector<float> peak, flag;
  std::vector<int32_t> first, count;
};

// `end`: the end of the whole heatmap buffer (prefetches stay inside it).
void DecodeMap(const float* m, const float* end, int64_t h, int64_t w, int64_t k, float* best,
               float* sum, Channels& ch, bool quarter, int32_t* ox, int32_t* oy, float* op,
               float* oxy) {
  const int64_t wk = w * k;
  // The map in bands of rows that fit in L1 (about 24 KB), read in address order; per band,
  // the column tiles merge its rows into the running maxima and sums. Each load requests
  // the same place one band further on (past the map's end, the next map's first rows), so
  // the next band arrives while this one is reduced; the last bands of the buffer request
  // nothing beyond it.
  const int64_t band = std::max<int64_t>(2, (24576 / sizeof(float)) / std::max<int64_t>(wk, 1));
  for (int64_t i0 = 0; i0 < h; i0 += band) {
    const int64_t i1 = std::min(h, i0 + band);
    const int64_t ahead = (i1 + band) * wk <= end - m ? band * wk : 0;
    int64_t j = 0;
    for (; j + kLanes * kTile <= wk; j += kLanes * kTile)
      ColumnTile<kTile>(m, i0, i1, wk, j, best, sum, ahead);
    for (; j + kLanes <= wk; j += kLanes) ColumnTile<1>(m, i0, i1, wk, j, best, sum, ahead);
    for (; j < wk; ++j) {
      float bv = i0 == 0 ? m[j] : best[j], bs = i0 == 0 ? m[j] : sum[j];
      for (int64_t i = i0 == 0 ? 1 : i0; i < i1; ++i) {
        const float v = m[i * wk + j];
        bv = v > bv ? v : bv;
        bs += v;
      }
      best[j] = bv;
      sum[j] = bs;
    }
  }
  // Per channel, with the channels innermost (contiguous, vectorised): the peak over the
  // columns, the sum of the column sums (NaN flags a NaN or both infinities), the first
  // column reaching the peak and how many do.
  float* __restrict peak = ch.peak.data();
  float* __restrict flag = ch.flag.data();
  int32_t* __restrict first = ch.first.data();
  int32_t* __restrict count = ch.count.data();
  for (int64_t c = 0; c < k; ++c) {
    peak[c] = best[c];
    flag[c] = sum[c];
  }
  for (int64_t x = 1; x < w; ++x) {
    const float* __restrict bx = best + x * k;
    const float* __restrict sx = sum + x * k;
    for (int64_t c = 0; c < k; ++c) {
      peak[c] = bx[c] > peak[c] ? bx[c] : peak[c];
      flag[c] += sx[c];
    }
  }
  for (int64_t c = 0; c < k; ++c) {
    first[c] = static_cast<int32_t>(w);
    count[c] = 0;
  }
  for (int64_t x = w - 1; x >= 0; --x) {  // backwards: the first column is written last
    const float* __restrict bx = best + x * k;
    for (int64_t c = 0; c < k; ++c) {
      const bool hit = bx[c] == peak[c];
      first[c] = hit ? static_cast<int32_t>(x) : first[c];
      count[c] += hit;
    }
  }
  for (int64_t c = 0; c < k; ++c) {
    auto at = [&](int64_t yy, int64_t xx) { return m[(yy * w + xx) * k + c]; };
    float pv = peak[c];
    bool any_nan = false;
    if (std::isnan(flag[c])) {  // rare: find out whether a column really holds NaN
      for (int64_t x = 0; x < w && !any_nan; ++x) {
        any_nan = std::isnan(sum[x * k + c]) && ColumnHasNan(m, h, wk, x * k + c);
      }
    }
    int64_t px = w - 1, py = h - 1;
    if (any_nan) {
      pv = std::numeric_limits<float>::quiet_NaN();
    } else {
      // The first row holding the peak in each column that reaches it; the first of them in
      // row-major order. Usually one column does: only its rows are read (in cache: the
      // map was just read).
      py = h;
      const int64_t last = count[c] == 1 ? first[c] + 1 : w;
      for (int64_t x = first[c]; x < last; ++x) {
        if (best[x * k + c] != pv) continue;
        for (int64_t yy = 0; yy < py; ++yy) {
          if (at(yy, x) == pv) {
            py = yy;
            px = x;
            break;
          }
        }
      }
    }
    ox[c] = static_cast<int32_t>(px);
    oy[c] = static_cast<int32_t>(py);
    op[c] = pv;
    float qx = 0.0f, qy = 0.0f;
    if (quarter) {
      qx = (px > 0 && px < w - 1) ? QuarterStep(at(py, px + 1), at(py, px - 1)) : 0.0f;
      qy = (py > 0 && py < h - 1) ? QuarterStep(at(py + 1, px), at(py - 1, px)) : 0.0f;
    }
    oxy[2 * c] = static_cast<float>(px) + 0.5f + qx;
    oxy[2 * c + 1] = static_cast<float>(py) + 0.5f + qy;
  }
}

ffi::Error HeatmapArgmax(ffi::Buffer<ffi::F32> maps, ffi::ResultBuffer<ffi::S32> xs,
                         ffi::ResultBuffer<ffi::S32> ys, ffi::ResultBuffer<ffi::F32> peaks,
                         ffi::ResultBuffer<ffi::F32> keypoints, bool quarter,
                         ffi::ThreadPool pool) {
  const auto dims = maps.dimensions();
  const int64_t rank = dims.size();
  if (rank < 3) return ffi::Error::InvalidArgument("heatmaps must have rank >= 3");
  const int64_t h = dims[rank - 3], w = dims[rank - 2], k = dims[rank - 1];
  const int64_t per = h * w * k;
  if (per == 0) return ffi::Error::Success();
  if (h * w > std::numeric_limits<int32_t>::max())
    return ffi::Error::InvalidArgument("heatmaps: H * W must fit in int32");
  const int64_t batch = maps.element_count() / per;
  const float* src = maps.typed_data();
  // Batches of maps per thread: about 1 MB of maps each, all on one thread below that.
  const int64_t group = std::max<int64_t>(1, (1 << 18) / per);
  const int64_t groups = (batch + group - 1) / group;
  jaxvision::ParallelFor(pool, groups, /*max_workers=*/4, [&](int64_t g) {
    std::vector<float> best(w * k), sum(w * k);
    Channels ch(k);
    for (int64_t b = g * group; b < std::min(batch, (g + 1) * group); ++b) {
      DecodeMap(src + b * per, src + batch * per, h, w, k, best.data(), sum.data(), ch, quarter,
                xs->typed_data() + b * k, ys->typed_data() + b * k, peaks->typed_data() + b * k,
                keypoints->typed_data() + 2 * b * k);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxvisionHeatmapArgmax, HeatmapArgmax,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("quarter")
                                  .Ctx<ffi::ThreadPool>());
