// Batched rectangular linear assignment on the CPU: an XLA FFI handler for
// jaxvision.matching (hungarian_match, linear_sum_assignment), compiled on first use by
// jaxvision/_src/native/loader.py. The XLA solver of augmenting_path.py gives an optimal
// assignment too (the same one where the optimum is unique).
//
// cost [..., M, N] float32, cost[j, i] for row i and column j (the [B, Q, T] layout of
// DETR's cost, targets as rows); row_active [..., N] bool ->
//   col4row [..., N] int32: the column of each active row, -1 for inactive rows;
//   row4col [..., M] int32: the row of each column, -1 where unassigned.
// Every active row gets a distinct column so that the total cost is minimal. With the
// attribute n_pairs = K > 0, NaN and +-inf entries stand for the large finite cost
// hi + 2 (K (hi - lo) + |hi| + 1) of the problem (hi, lo: its largest and smallest finite
// entries of active rows; 0 when there are none), so an assignment with fewer of them is
// always cheaper (jaxvision/_src/matching/costs.py, replacement_cost; in double here, so
// without that function's float32 cap). With n_pairs = 0, +inf (and NaN) forbid a pair,
// and a row left without an allowed free column stays unassigned (-1).
//
// The algorithm: each row's cheapest column is taken where no earlier row took it (tight
// pairs with u = the row minimum, v = 0), then every other row is inserted by a Dijkstra
// search for the shortest augmenting path over the reduced costs c[i][j] - u[i] - v[j], a
// dual update and the augmentation along the path (Jonker and Volgenant 1987, in the
// rectangular form of Crouse 2016). Duals and path lengths are kept in double precision.
// Problems of a batch run in parallel on XLA's CPU thread pool.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

#if defined(__AVX512F__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef double VecD __attribute__((vector_size(8 * kLanes)));
typedef int64_t VecL __attribute__((vector_size(8 * kLanes)));

inline VecD LoadD(const double* p) {
  VecD x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}

inline VecL LoadL(const int64_t* p) {
  VecL x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}

inline VecD Select(VecL mask, VecD a, VecD b) {
  return reinterpret_cast<VecD>((reinterpret_cast<VecL>(a) & mask) |
                                (reinterpret_cast<VecL>(b) & ~mask));
}

// Working memory of one problem, reused across the problems a thread solves.
struct Scratch {
  std::vector<double> cost;  // [rows][m], row-major
  // Column arrays are padded to whole vectors (padding: cost and seen +inf).
  std::vector<double> u, v, shortest, seen;  // seen: 0, or +inf for columns in the tree
  std::vector<int64_t> path;
  std::vector<int32_t> rows, col4row, row4col;
  std::vector<char> row_seen;
};

// Inserts free row `start` by one shortest augmenting path; false where no allowed free
// column can be reached (nothing is changed then). Each Dijkstra step relaxes every column
// not yet in the tree in one branch-free pass (vectorised by the compiler: `seen` is 0 or
// +inf, added to a column's path length to leave it out of the minimum), then finds the
// first column at the minimum, a free one preferred (the path ends there).
bool InsertRow(Scratch& s, int64_t n, int64_t m, int64_t mp, int32_t start) {
  double* shortest = s.shortest.data();
  double* seen = s.seen.data();
  int64_t* path = s.path.data();
  const double* v = s.v.data();
  const int32_t* row4col = s.row4col.data();
  for (int64_t j = 0; j < mp; ++j) {
    shortest[j] = kInf;
    seen[j] = j < m ? 0 : kInf;
    path[j] = -1;
  }
  std::fill(s.row_seen.begin(), s.row_seen.end(), 0);
  double reached = 0;  // length of the shortest path found so far
  int32_t row = start, sink = -1;
  while (sink < 0) {
    s.row_seen[row] = 1;
    const double* c = s.cost.data() + row * mp;
    const VecD base = VecD{} + (reached - s.u[row]);
    const VecL from = VecL{} + static_cast<int64_t>(row);
    VecD low = VecD{} + kInf;
    for (int64_t j = 0; j < mp; j += kLanes) {
      const VecD sj = LoadD(shortest + j);
      const VecD seen_j = LoadD(seen + j);
      const VecD r = base + LoadD(c + j) - LoadD(v + j) + seen_j;
      const VecL better = r < sj;
      const VecD now = Select(better, r, sj);
      const VecL p = (from & better) | (LoadL(path + j) & ~better);
      std::memcpy(shortest + j, &now, sizeof(VecD));
      std::memcpy(path + j, &p, sizeof(VecL));
      const VecD open = now + seen_j;
      low = Select(open < low, open, low);
    }
    double lowest = low[0];
    for (int t = 1; t < kLanes; ++t) lowest = low[t] < lowest ? low[t] : lowest;
    if (lowest == kInf) return false;
    int64_t pick = -1;
    for (int64_t j = 0; j < m; ++j) {
      if (seen[j] == 0 && shortest[j] == lowest) {
        if (row4col[j] < 0) {
          pick = j;
          break;
        }
        if (pick < 0) pick = j;
      }
    }
    reached = lowest;
    seen[pick] = kInf;
    if (row4col[pick] < 0) {
      sink = static_cast<int32_t>(pick);
    } else {
      row = row4col[pick];
    }
  }
  // Dual update: every tree row and column moves by how much shorter its path was.
  s.u[start] += reached;
  for (int64_t i = 0; i < n; ++i) {
    if (s.row_seen[i] && i != start) s.u[i] += reached - s.shortest[s.col4row[i]];
  }
  for (int64_t j = 0; j < m; ++j) {
    if (seen[j] != 0) s.v[j] -= reached - shortest[j];
  }
  // Augment along the path back to the start.
  for (int32_t j = sink;;) {
    const int32_t i = static_cast<int32_t>(path[j]);
    s.row4col[j] = i;
    std::swap(s.col4row[i], j);
    if (i == start) break;
  }
  return true;
}

void SolveProblem(const float* cost, const bool* active, int64_t m, int64_t n, int64_t n_pairs,
                  Scratch& s, int32_t* col4row, int32_t* row4col) {
  s.rows.clear();
  for (int64_t i = 0; i < n; ++i) {
    col4row[i] = -1;
    if (active[i]) s.rows.push_back(static_cast<int32_t>(i));
  }
  for (int64_t j = 0; j < m; ++j) row4col[j] = -1;
  const int64_t k = s.rows.size();
  if (k == 0) return;
  const int64_t mp = (m + kLanes - 1) / kLanes * kLanes;
  s.cost.assign(k * mp, kInf);
  for (int64_t r = 0; r < k; ++r) {  // the active rows, contiguous
    const int64_t i = s.rows[r];
    double* dst = s.cost.data() + r * mp;
    for (int64_t j = 0; j < m; ++j) dst[j] = cost[j * n + i];
  }
  double hi = -kInf, lo = kInf;
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t j = 0; j < m; ++j) {
      const double c = s.cost[r * mp + j];
      if (std::isfinite(c)) {
        hi = std::max(hi, c);
        lo = std::min(lo, c);
      }
    }
  }
  if (hi < lo) hi = lo = 0;  // no finite entry
  const double big = n_pairs > 0 ? hi + 2 * (n_pairs * (hi - lo) + std::abs(hi) + 1) : kInf;
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t j = 0; j < m; ++j) {
      double& c = s.cost[r * mp + j];
      if (!std::isfinite(c)) c = big;
    }
  }
  s.u.assign(k, 0.0);
  s.v.assign(mp, 0.0);
  s.shortest.resize(mp);
  s.seen.resize(mp);
  s.path.resize(mp);
  s.row_seen.resize(k);
  s.col4row.assign(k, -1);
  s.row4col.assign(m, -1);
  std::vector<int32_t> pending;
  for (int32_t r = 0; r < k; ++r) {  // greedy start: tight pairs
    const double* c = s.cost.data() + r * mp;
    int64_t best = 0;
    for (int64_t j = 1; j < m; ++j) {
      if (c[j] < c[best]) best = j;
    }
    if (c[best] < kInf && s.row4col[best] < 0) {
      s.row4col[best] = r;
      s.col4row[r] = static_cast<int32_t>(best);
      s.u[r] = c[best];
    } else {
      pending.push_back(r);
    }
  }
  for (const int32_t r : pending) InsertRow(s, k, m, mp, r);
  for (int64_t r = 0; r < k; ++r) col4row[s.rows[r]] = s.col4row[r];
  for (int64_t j = 0; j < m; ++j) {
    row4col[j] = s.row4col[j] < 0 ? -1 : s.rows[s.row4col[j]];
  }
}

ffi::Error Assignment(ffi::Buffer<ffi::F32> cost, ffi::Buffer<ffi::PRED> row_active,
                      ffi::ResultBuffer<ffi::S32> col4row, ffi::ResultBuffer<ffi::S32> row4col,
                      int64_t n_pairs, ffi::ThreadPool pool) {
  const auto dims = cost.dimensions();
  const int64_t rank = dims.size();
  if (rank < 2) return ffi::Error::InvalidArgument("cost must have rank >= 2");
  const int64_t m = dims[rank - 2], n = dims[rank - 1];
  if (m * n == 0) return ffi::Error::Success();
  if (row_active.element_count() * m != cost.element_count())
    return ffi::Error::InvalidArgument("row_active must have shape [..., N] of cost [..., M, N]");
  const int64_t batch = cost.element_count() / (m * n);
  const float* c = cost.typed_data();
  const bool* a = row_active.typed_data();
  int32_t* c4r = col4row->typed_data();
  int32_t* r4c = row4col->typed_data();
  // Groups of problems per task: about 32k cost entries each.
  const int64_t group = std::max<int64_t>(1, 32768 / (m * n));
  const int64_t groups = (batch + group - 1) / group;
  jaxvision::ParallelFor(pool, groups, /*max_workers=*/4, [&](int64_t g) {
    Scratch s;
    for (int64_t b = g * group; b < std::min(batch, (g + 1) * group); ++b) {
      SolveProblem(c + b * m * n, a + b * n, m, n, n_pairs, s, c4r + b * n, r4c + b * m);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxvisionAssignment, Assignment,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("n_pairs")
                                  .Ctx<ffi::ThreadPool>());
