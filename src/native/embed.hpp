// Hashed TF-IDF document embeddings: the sparse random projection and the per-thread
// accumulator behind hashed_embeddings and score_and_embed (bindings.cpp), kept apart so that
// bench/kernel_harness.cpp can profile them without Python.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace curate {

// splitmix64 finaliser with the golden-ratio increment (the same as curate.stages.embed._splitmix).
inline uint64_t splitmix_step(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

// The sparse projection of a bucket: `nnz` (coordinate, sign) codes, four from each 64-bit hash
// splitmix((bucket * words + j) ^ salt), words = ceil(nnz / 4): code r is the 16-bit field r mod 4
// of word r / 4, its top bit the sign and its low 15 bits the coordinate (multiply-shift into
// [0, dim); dim <= 2^15). One hash per four codes: hashing each code was a quarter of the time.
constexpr int kMaxProjectionDim = 1 << 15;
template <typename Add>
inline void project_bucket(uint64_t bucket, int nnz, uint64_t salt, uint32_t d, Add&& add) {
  const uint64_t words = static_cast<uint64_t>((nnz + 3) / 4);
  for (int r = 0; r < nnz; r += 4) {
    const uint64_t h = splitmix_step((bucket * words + static_cast<uint64_t>(r / 4)) ^ salt);
    for (int f = 0; f < 4 && r + f < nnz; ++f) {
      const uint32_t field = static_cast<uint32_t>(h >> (16 * f)) & 0xFFFFu;
      add(((field & 0x7FFFu) * d) >> 15, field >> 15);
    }
  }
}

// ln(c) for the small counts most n-grams have (the same std::log values, looked up).
constexpr size_t kLogTable = 256;
inline const std::vector<double>& small_logs() {
  static const std::vector<double> table = [] {
    std::vector<double> t(kLogTable, 0.0);
    for (size_t c = 1; c < kLogTable; ++c) t[c] = std::log(static_cast<double>(c));
    return t;
  }();
  return table;
}

// One thread's state for hashed TF-IDF embeddings: per document, (1 + ln count) x idf[bucket] for
// each unique n-gram bucket, projected by a sparse random map (each bucket adds ±weight to the
// `nnz` coordinates of project_bucket) to `dim`, then L2-normalised; accumulates in double.
// Unique buckets are kept in first-seen order and counted next to a stamp of the document that
// last had them: no per-document hash table, and the summation order, hence the bits, depend on
// the document only.
struct Embedder {
  struct Slot {
    uint32_t stamp = 0, count = 0;
  };
  // The table lives with the thread: a worker's calls (one per batch, on its own thread) reuse it
  // instead of faulting in fresh pages each time. Stamps run on across calls and documents.
  struct Table {
    std::vector<Slot> slots;
    uint32_t mark = 0;
  };
  static Table& thread_table(uint64_t buckets) {
    static thread_local Table table;
    if (table.slots.size() != buckets) {
      table.slots.assign(static_cast<size_t>(buckets), Slot{});
      table.mark = 0;
    }
    return table;
  }
  const double* idf;
  const double* logs = small_logs().data();
  int nnz;
  uint64_t salt;
  uint32_t dim;
  Table& table;
  Slot* slots;
  static constexpr size_t kPrefetchAhead = 16, kFlushAt = 4096;
  std::vector<uint32_t> pending, unique;  // this document's buckets as hashed; each one once
  std::vector<double> acc;
  uint32_t mark = 0;

  Embedder(const double* idf_, uint64_t buckets, int dim_, int nnz_, uint64_t proj_seed)
      : idf(idf_), nnz(nnz_), salt(splitmix_step(proj_seed)), dim(static_cast<uint32_t>(dim_)),
        table(thread_table(buckets)), slots(table.slots.data()), acc(static_cast<size_t>(dim_)) {}

  void begin() {
    if (++table.mark == 0) {  // the stamps wrapped: clear them
      std::fill(table.slots.begin(), table.slots.end(), Slot{});
      table.mark = 1;
    }
    mark = table.mark;
    unique.clear();
    pending.clear();
  }
  // The queued buckets' counts, and the unique ones in first-seen order.
  void count_pending() {
    const size_t n = pending.size();
    for (size_t i = 0; i < n; ++i) {
      if (i + kPrefetchAhead < n) __builtin_prefetch(slots + pending[i + kPrefetchAhead], 1);
      Slot& s = slots[pending[i]];
      if (s.stamp != mark) {
        s.stamp = mark;
        s.count = 0;
        unique.push_back(pending[i]);
      }
      ++s.count;
    }
    pending.clear();
  }
  // Buckets are queued and counted in runs (count_pending, then finish) with prefetches a few
  // ahead, because the 2^18-entry count and idf tables (2 MB each) miss L2 on most n-grams, and a
  // miss per table and n-gram was a third of the time when taken one at a time. A run is at most
  // kFlushAt buckets, so a long document's queue stays at 16 KB.
  void add(uint64_t bucket) {
    pending.push_back(static_cast<uint32_t>(bucket));
    if (pending.size() == kFlushAt) count_pending();
  }
  // Writes the document's embedding to row (left as zeros when it has no n-gram).
  void finish(float* row) {
    count_pending();
    if (unique.empty()) return;
    std::fill(acc.begin(), acc.end(), 0.0);
    const size_t n = unique.size();
    for (size_t i = 0; i < n; ++i) {
      if (i + kPrefetchAhead < n) __builtin_prefetch(idf + unique[i + kPrefetchAhead]);
      const uint32_t bucket = unique[i];
      const uint32_t c = slots[bucket].count;
      const double ln = c < kLogTable ? logs[c] : std::log(static_cast<double>(c));
      const double weight = (1.0 + ln) * idf[bucket];
      const double signed_weight[2] = {-weight, weight};  // indexed by the sign bit: a random branch cost 40%
      project_bucket(bucket, nnz, salt, dim, [&](uint32_t coord, uint32_t sign) { acc[coord] += signed_weight[sign]; });
    }
    double norm = 0.0;
    for (double v : acc) norm += v * v;
    if (norm <= 0.0) return;
    const double inv = 1.0 / std::sqrt(norm);
    for (uint32_t c = 0; c < dim; ++c) row[c] = static_cast<float>(acc[c] * inv);
  }
};

inline void check_embedding_args(uint64_t buckets, int dim, int nnz) {
  if (dim < 1 || nnz < 1) throw std::invalid_argument("dim and nnz must be positive");
  if (dim > kMaxProjectionDim) throw std::invalid_argument("dim must be at most 32768");
  if (buckets >= 0xFFFFFFFFULL) throw std::invalid_argument("embeddings need buckets < 2^32 - 1");
}

}  // namespace curate
