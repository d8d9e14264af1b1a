// Python bindings for the hashed n-gram kernel. Only curate/native.py imports this module.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "embed.hpp"
#include "heuristics.hpp"
#include "kernel.hpp"

namespace nb = nanobind;
using namespace curate;

namespace {

template <class T>
using Array1D = nb::ndarray<nb::numpy, T, nb::ndim<1>>;

// Hands a std::vector's storage to NumPy without copying.
template <class T>
Array1D<T> to_numpy(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return Array1D<T>(heap->data(), {heap->size()}, owner);
}

StringColumn column_from_capsules(nb::handle schema_capsule, nb::handle array_capsule);

// Lists of capsules (a chunked array's chunks) make one chunked column.
StringColumn columns_from_capsules(nb::handle schemas, nb::handle arrays) {
  if (!nb::isinstance<nb::list>(schemas)) return column_from_capsules(schemas, arrays);
  nb::list s = nb::borrow<nb::list>(schemas), a = nb::borrow<nb::list>(arrays);
  if (s.size() != a.size()) throw std::invalid_argument("as many schemas as arrays are needed");
  std::vector<StringColumn> chunks;
  for (size_t i = 0; i < s.size(); ++i) chunks.push_back(column_from_capsules(s[i], a[i]));
  return StringColumn::chunked(std::move(chunks));
}

StringColumn column_from_capsules(nb::handle schema_capsule, nb::handle array_capsule) {
  auto* schema = static_cast<ArrowSchema*>(PyCapsule_GetPointer(schema_capsule.ptr(), "arrow_schema"));
  if (!schema) throw nb::python_error();
  auto* array = static_cast<ArrowArray*>(PyCapsule_GetPointer(array_capsule.ptr(), "arrow_array"));
  if (!array) throw nb::python_error();
  return StringColumn::from_c(schema, array);
}

HashSpec make_spec(uint64_t buckets, int order, bool lowercase, uint64_t seed) {
  if (buckets == 0) throw std::invalid_argument("buckets must be positive");
  if (order < 1 || order > kMaxOrder) throw std::invalid_argument("order must be between 1 and 8");
  HashSpec s;
  s.buckets = buckets;
  s.order = order;
  s.lowercase = lowercase;
  s.seed = seed;
  return s;
}

int clamp_threads(int threads, int64_t n) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
}

Array1D<int64_t> token_counts(nb::handle schema, nb::handle array, bool lowercase, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  std::vector<int64_t> out(static_cast<size_t>(col.length), 0);
  HashSpec spec = make_spec(1, 1, lowercase, 0);
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, clamp_threads(threads, col.length), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        int64_t c = 0;
        for_each_token(p, n, spec, [&](uint64_t) { ++c; });
        out[static_cast<size_t>(i)] = c;
      }
    });
  }
  return to_numpy(std::move(out));
}

Array1D<int64_t> ngram_histogram(nb::handle schema, nb::handle array, uint64_t buckets, int order,
                                 bool lowercase, uint64_t seed, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  HashSpec spec = make_spec(buckets, order, lowercase, seed);
  const int nt = clamp_threads(threads, col.length);
  std::vector<int64_t> total(buckets, 0);
  {
    nb::gil_scoped_release release;
    // uint32 per-thread counts halve the cache footprint; a thread flushes into int64 totals
    // before its increments could overflow them.
    std::vector<std::vector<uint32_t>> local(static_cast<size_t>(nt));
    std::vector<int64_t> pending(static_cast<size_t>(nt), 0);
    std::mutex flush_mutex;
    auto flush = [&](std::vector<uint32_t>& hist) {
      std::lock_guard<std::mutex> lock(flush_mutex);
      for (uint64_t j = 0; j < buckets; ++j) total[j] += hist[j];
      std::fill(hist.begin(), hist.end(), 0u);
    };
    parallel_blocks(col.length, nt, [&](int64_t b, int64_t e, int t) {
      auto& hist = local[static_cast<size_t>(t)];
      if (hist.empty()) hist.assign(buckets, 0u);
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        // at most order n-grams per byte: flush first if this document could overflow a counter
        if (pending[static_cast<size_t>(t)] + n * spec.order >= 0xFFFFFFFFLL) {
          flush(hist);
          pending[static_cast<size_t>(t)] = 0;
        }
        pending[static_cast<size_t>(t)] += n * spec.order;
        for_each_ngram(p, n, spec, [&](uint64_t bucket) { ++hist[bucket]; });
      }
    });
    for (auto& hist : local)
      if (!hist.empty()) flush(hist);
  }
  return to_numpy(std::move(total));
}

std::pair<Array1D<double>, Array1D<int64_t>> dot_weights(
    nb::handle schema, nb::handle array, nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu> weights,
    int order, bool lowercase, uint64_t seed, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  HashSpec spec = make_spec(weights.shape(0), order, lowercase, seed);
  const double* w = weights.data();
  std::vector<double> sums(static_cast<size_t>(col.length), 0.0);
  std::vector<int64_t> ntok(static_cast<size_t>(col.length), 0);
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, clamp_threads(threads, col.length), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        double s = 0.0;
        ntok[static_cast<size_t>(i)] = for_each_ngram(p, n, spec, [&](uint64_t bucket) { s += w[bucket]; });
        sums[static_cast<size_t>(i)] = s;
      }
    });
  }
  return {to_numpy(std::move(sums)), to_numpy(std::move(ntok))};
}

// Document i's n-gram buckets, in text order, into `out` (cleared first).
template <class T>
void document_buckets(const StringColumn& col, int64_t i, const HashSpec& spec, std::vector<T>& out) {
  const uint8_t* p;
  int64_t len;
  col.get(i, p, len);
  out.clear();
  for_each_ngram(p, len, spec, [&](uint64_t bucket) { out.push_back(static_cast<T>(bucket)); });
}

std::tuple<Array1D<int64_t>, Array1D<uint32_t>, Array1D<uint32_t>> ngram_features(
    nb::handle schema, nb::handle array, uint64_t buckets, int order, bool lowercase, uint64_t seed, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  HashSpec spec = make_spec(buckets, order, lowercase, seed);
  if (buckets > 0xFFFFFFFFULL) throw std::invalid_argument("features need buckets < 2^32");
  const size_t n = static_cast<size_t>(col.length);
  // Each document's sorted unique buckets and counts, gathered per document then concatenated.
  std::vector<std::vector<uint32_t>> idx(n), cnt(n);
  std::vector<int64_t> indptr(n + 1, 0);
  std::vector<uint32_t> indices, counts;
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, clamp_threads(threads, col.length), [&](int64_t b, int64_t e, int) {
      std::vector<uint32_t> scratch;
      for (int64_t i = b; i < e; ++i) {
        document_buckets(col, i, spec, scratch);
        std::sort(scratch.begin(), scratch.end());
        auto& I = idx[static_cast<size_t>(i)];
        auto& C = cnt[static_cast<size_t>(i)];
        for (size_t k = 0; k < scratch.size();) {
          size_t j = k;
          while (j < scratch.size() && scratch[j] == scratch[k]) ++j;
          I.push_back(scratch[k]);
          C.push_back(static_cast<uint32_t>(j - k));
          k = j;
        }
      }
    });
    for (size_t i = 0; i < n; ++i) indptr[i + 1] = indptr[i] + static_cast<int64_t>(idx[i].size());
    indices.reserve(static_cast<size_t>(indptr[n]));
    counts.reserve(static_cast<size_t>(indptr[n]));
    for (size_t i = 0; i < n; ++i) {
      indices.insert(indices.end(), idx[i].begin(), idx[i].end());
      counts.insert(counts.end(), cnt[i].begin(), cnt[i].end());
      std::vector<uint32_t>().swap(idx[i]);
      std::vector<uint32_t>().swap(cnt[i]);
    }
  }
  return {to_numpy(std::move(indptr)), to_numpy(std::move(indices)), to_numpy(std::move(counts))};
}

nb::ndarray<nb::numpy, float, nb::ndim<2>> matrix(std::vector<float>* out, int64_t rows, int dim) {
  nb::capsule owner(out, [](void* q) noexcept { delete static_cast<std::vector<float>*>(q); });
  return nb::ndarray<nb::numpy, float, nb::ndim<2>>(out->data(), {static_cast<size_t>(rows), static_cast<size_t>(dim)},
                                                    owner);
}

// Hashed TF-IDF embeddings (Embedder): row-major (documents x dim) float32; documents without
// n-grams are all zeros.
nb::ndarray<nb::numpy, float, nb::ndim<2>> hashed_embeddings(nb::handle schema, nb::handle array,
                                                            Array1D<const double> idf, int dim, int nnz,
                                                            uint64_t proj_seed, int order, bool lowercase,
                                                            uint64_t seed, int threads) {
  StringColumn col = columns_from_capsules(schema, array);
  const uint64_t buckets = static_cast<uint64_t>(idf.shape(0));
  HashSpec spec = make_spec(buckets, order, lowercase, seed);
  check_embedding_args(buckets, dim, nnz);
  auto* out = new std::vector<float>(static_cast<size_t>(col.length) * static_cast<size_t>(dim), 0.0f);
  {
    nb::gil_scoped_release release;
    const int nt = clamp_threads(threads, col.length);
    std::vector<std::unique_ptr<Embedder>> state(static_cast<size_t>(nt));  // one per thread, made by its first block
    parallel_blocks(col.length, nt, [&](int64_t b, int64_t e, int t) {
      auto& emb = state[static_cast<size_t>(t)];
      if (!emb) emb = std::make_unique<Embedder>(idf.data(), buckets, dim, nnz, proj_seed);
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t len;
        col.get(i, p, len);
        emb->begin();
        for_each_ngram(p, len, spec, [&](uint64_t bucket) { emb->add(bucket); });
        emb->finish(out->data() + static_cast<size_t>(i) * static_cast<size_t>(dim));
      }
    });
  }
  return matrix(out, col.length, dim);
}

// dot_weights and hashed_embeddings of the same documents from one tokenisation: both tables
// share the n-gram hashes (same order, case folding and seed) and differ only in size.
std::tuple<Array1D<double>, Array1D<int64_t>, nb::ndarray<nb::numpy, float, nb::ndim<2>>> score_and_embed(
    nb::handle schema, nb::handle array, nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu> weights,
    Array1D<const double> idf, int dim, int nnz, uint64_t proj_seed, int order, bool lowercase, uint64_t seed,
    int threads) {
  StringColumn col = columns_from_capsules(schema, array);
  const uint64_t m_score = weights.shape(0), m_embed = static_cast<uint64_t>(idf.shape(0));
  HashSpec spec = make_spec(m_score, order, lowercase, seed);
  check_embedding_args(m_embed, dim, nnz);
  const double* w = weights.data();
  std::vector<double> sums(static_cast<size_t>(col.length), 0.0);
  std::vector<int64_t> ntok(static_cast<size_t>(col.length), 0);
  auto* out = new std::vector<float>(static_cast<size_t>(col.length) * static_cast<size_t>(dim), 0.0f);
  {
    nb::gil_scoped_release release;
    const int nt = clamp_threads(threads, col.length);
    std::vector<std::unique_ptr<Embedder>> state(static_cast<size_t>(nt));
    parallel_blocks(col.length, nt, [&](int64_t b, int64_t e, int t) {
      auto& emb = state[static_cast<size_t>(t)];
      if (!emb) emb = std::make_unique<Embedder>(idf.data(), m_embed, dim, nnz, proj_seed);
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t len;
        col.get(i, p, len);
        emb->begin();
        double s = 0.0;
        ntok[static_cast<size_t>(i)] = for_each_ngram_hash(p, len, spec, [&](uint64_t h) {
          s += w[bucket_of(h, m_score)];
          emb->add(bucket_of(h, m_embed));
        });
        sums[static_cast<size_t>(i)] = s;
        emb->finish(out->data() + static_cast<size_t>(i) * static_cast<size_t>(dim));
      }
    });
  }
  return {to_numpy(std::move(sums)), to_numpy(std::move(ntok)), matrix(out, col.length, dim)};
}

// Document frequencies: for each bucket, the number of documents with at least one n-gram in it,
// and the number of documents with any n-gram. A bucket is counted once per document by stamping
// it with the document's number, next to its count (one cache line per n-gram; a per-document
// hash table cost 10% more).
std::pair<Array1D<int64_t>, int64_t> document_frequencies(nb::handle schema, nb::handle array, uint64_t buckets,
                                                          int order, bool lowercase, uint64_t seed, int threads) {
  StringColumn col = columns_from_capsules(schema, array);
  HashSpec spec = make_spec(buckets, order, lowercase, seed);
  if (col.length >= 0xFFFFFFFFLL) throw std::invalid_argument("document_frequencies: too many rows in one call");
  const int nt = clamp_threads(threads, col.length);
  struct Slot {
    uint32_t stamp, count;  // the last document (row + 1) that had the bucket; documents that had it
  };
  // One table per thread, zeroed here: a thread runs the body for many blocks.
  std::vector<std::vector<Slot>> partial(static_cast<size_t>(nt), std::vector<Slot>(static_cast<size_t>(buckets), Slot{0, 0}));
  std::vector<int64_t> docs(static_cast<size_t>(nt), 0);
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, nt, [&](int64_t b, int64_t e, int t) {
      Slot* df = partial[static_cast<size_t>(t)].data();
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t len;
        col.get(i, p, len);
        const uint32_t mark = static_cast<uint32_t>(i) + 1;
        bool any = false;
        for_each_ngram(p, len, spec, [&](uint64_t bucket) {
          any = true;
          Slot& s = df[bucket];
          if (s.stamp != mark) {
            s.stamp = mark;
            ++s.count;
          }
        });
        docs[static_cast<size_t>(t)] += any ? 1 : 0;
      }
    });
  }
  std::vector<int64_t> total(static_cast<size_t>(buckets), 0);
  int64_t n_docs = 0;
  for (size_t t = 0; t < partial.size(); ++t) {
    n_docs += docs[t];
    for (size_t j = 0; j < total.size(); ++j) total[j] += partial[t][j].count;
  }
  return {to_numpy(std::move(total)), n_docs};
}

// MinHash signatures: a row-major (documents x num_perm) uint32 matrix.
nb::ndarray<nb::numpy, uint32_t, nb::ndim<2>> minhash(nb::handle schema, nb::handle array, int num_perm, int ngram,
                                                     bool lowercase, uint64_t seed, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  if (num_perm < 1 || num_perm > 4096) throw std::invalid_argument("num_perm must be between 1 and 4096");
  if (ngram < 1 || ngram > kMaxOrder) throw std::invalid_argument("ngram must be between 1 and 8");
  HashSpec spec = make_spec(1, 1, lowercase, 0);
  spec.words_only = true;
  MinHashParams params(num_perm, ngram, seed);
  auto* out = new std::vector<uint32_t>(static_cast<size_t>(col.length) * static_cast<size_t>(num_perm));
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, clamp_threads(threads, col.length), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        minhash_document(p, n, spec, params, out->data() + static_cast<size_t>(i) * static_cast<size_t>(num_perm));
      }
    });
  }
  nb::capsule owner(out, [](void* q) noexcept { delete static_cast<std::vector<uint32_t>*>(q); });
  return nb::ndarray<nb::numpy, uint32_t, nb::ndim<2>>(out->data(), {static_cast<size_t>(col.length), static_cast<size_t>(num_perm)}, owner);
}

// Distinct sorted shingle hashes of every document, flattened: (offsets [n + 1], values).
std::pair<Array1D<int64_t>, Array1D<uint64_t>> shingle_sets(nb::handle schema, nb::handle array, int ngram,
                                                             bool lowercase, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  if (ngram < 1 || ngram > kMaxOrder) throw std::invalid_argument("ngram must be between 1 and 8");
  HashSpec spec = make_spec(1, 1, lowercase, 0);
  spec.words_only = true;
  std::vector<std::vector<uint64_t>> sets(static_cast<size_t>(col.length));
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, clamp_threads(threads, col.length), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        shingle_set(p, n, spec, ngram, sets[static_cast<size_t>(i)]);
      }
    });
  }
  std::vector<int64_t> offsets(sets.size() + 1, 0);
  for (size_t i = 0; i < sets.size(); ++i) offsets[i + 1] = offsets[i] + static_cast<int64_t>(sets[i].size());
  std::vector<uint64_t> values(static_cast<size_t>(offsets.back()));
  for (size_t i = 0; i < sets.size(); ++i) std::copy(sets[i].begin(), sets[i].end(), values.begin() + offsets[i]);
  return {to_numpy(std::move(offsets)), to_numpy(std::move(values))};
}

// Jaccard of pairs of sets held as (offsets, values): set ia[k] of A against set ib[k] of B.
Array1D<double> pair_jaccard(Array1D<const int64_t> off_a, Array1D<const uint64_t> val_a, Array1D<const int64_t> ia,
                             Array1D<const int64_t> off_b, Array1D<const uint64_t> val_b, Array1D<const int64_t> ib) {
  if (ia.shape(0) != ib.shape(0)) throw std::invalid_argument("ia and ib differ in length");
  const int64_t na = static_cast<int64_t>(off_a.shape(0)) - 1, nb_ = static_cast<int64_t>(off_b.shape(0)) - 1;
  const int64_t m = static_cast<int64_t>(ia.shape(0));
  std::vector<double> out(static_cast<size_t>(m));
  const int64_t *oa = off_a.data(), *ob = off_b.data(), *xa = ia.data(), *xb = ib.data();
  if (na < 0 || nb_ < 0 || oa[na] > static_cast<int64_t>(val_a.shape(0)) || ob[nb_] > static_cast<int64_t>(val_b.shape(0)))
    throw std::invalid_argument("offsets run past the values");
  for (int64_t k = 0; k < m; ++k) {
    if (xa[k] < 0 || xa[k] >= na || xb[k] < 0 || xb[k] >= nb_) throw std::out_of_range("set index out of range");
  }
  {
    nb::gil_scoped_release release;
    for (int64_t k = 0; k < m; ++k) {
      const int64_t i = xa[k], j = xb[k];
      out[static_cast<size_t>(k)] =
          sorted_jaccard(val_a.data() + oa[i], oa[i + 1] - oa[i], val_b.data() + ob[j], ob[j + 1] - ob[j]);
    }
  }
  return to_numpy(std::move(out));
}

// Quality signals: a row-major (documents x kNumSignals) float64 matrix (see heuristics.hpp).
nb::ndarray<nb::numpy, double, nb::ndim<2>> heuristic_signals(nb::handle schema, nb::handle array, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  const size_t k = static_cast<size_t>(kNumSignals);
  auto* out = new std::vector<double>(static_cast<size_t>(col.length) * k);
  {
    nb::gil_scoped_release release;
    const int nt = clamp_threads(threads, col.length);
    std::vector<HeuristicScratch> scratch(static_cast<size_t>(nt));
    parallel_blocks(col.length, nt, [&](int64_t b, int64_t e, int t) {
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        document_signals(p, n, scratch[static_cast<size_t>(t)], out->data() + static_cast<size_t>(i) * k);
      }
    });
  }
  nb::capsule owner(out, [](void* q) noexcept { delete static_cast<std::vector<double>*>(q); });
  return nb::ndarray<nb::numpy, double, nb::ndim<2>>(out->data(), {static_cast<size_t>(col.length), k}, owner);
}

// Whole-string 64-bit hashes (document ids, text fingerprints); nulls hash like "".
Array1D<uint64_t> string_hashes(nb::handle schema, nb::handle array, uint64_t seed, int threads) {
  StringColumn col = column_from_capsules(schema, array);
  std::vector<uint64_t> out(static_cast<size_t>(col.length), 0);
  {
    nb::gil_scoped_release release;
    parallel_blocks(col.length, clamp_threads(threads, col.length), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const uint8_t* p;
        int64_t n;
        col.get(i, p, n);
        TokenHasher th(seed);
        for (int64_t k = 0; k < n; ++k) th.push(p[k]);
        out[static_cast<size_t>(i)] = th.finish();
      }
    });
  }
  return to_numpy(std::move(out));
}

uint64_t hash_token_bytes(nb::bytes data, uint64_t seed) {
  TokenHasher th(seed);
  const auto* p = reinterpret_cast<const uint8_t*>(data.c_str());
  for (size_t i = 0; i < data.size(); ++i) th.push(p[i]);
  return th.finish();
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "curate's compiled hashed n-gram kernel (use curate.native, not this module)";
  m.def("token_counts", &token_counts, nb::arg("schema"), nb::arg("array"), nb::arg("lowercase"), nb::arg("threads"));
  m.def("ngram_histogram", &ngram_histogram, nb::arg("schema"), nb::arg("array"), nb::arg("buckets"),
        nb::arg("order"), nb::arg("lowercase"), nb::arg("seed"), nb::arg("threads"));
  m.def("dot_weights", &dot_weights, nb::arg("schema"), nb::arg("array"), nb::arg("weights"), nb::arg("order"),
        nb::arg("lowercase"), nb::arg("seed"), nb::arg("threads"));
  m.def("ngram_features", &ngram_features, nb::arg("schema"), nb::arg("array"), nb::arg("buckets"),
        nb::arg("order"), nb::arg("lowercase"), nb::arg("seed"), nb::arg("threads"));
  m.def("document_frequencies", &document_frequencies, nb::arg("schema"), nb::arg("array"), nb::arg("buckets"),
        nb::arg("order"), nb::arg("lowercase"), nb::arg("seed"), nb::arg("threads"));
  m.def("hashed_embeddings", &hashed_embeddings, nb::arg("schema"), nb::arg("array"), nb::arg("idf"),
        nb::arg("dim"), nb::arg("nnz"), nb::arg("proj_seed"), nb::arg("order"), nb::arg("lowercase"),
        nb::arg("seed"), nb::arg("threads"));
  m.def("score_and_embed", &score_and_embed, nb::arg("schema"), nb::arg("array"), nb::arg("weights"),
        nb::arg("idf"), nb::arg("dim"), nb::arg("nnz"), nb::arg("proj_seed"), nb::arg("order"),
        nb::arg("lowercase"), nb::arg("seed"), nb::arg("threads"));
  m.def("minhash", &minhash, nb::arg("schema"), nb::arg("array"), nb::arg("num_perm"), nb::arg("ngram"),
        nb::arg("lowercase"), nb::arg("seed"), nb::arg("threads"));
  m.def("shingle_sets", &shingle_sets, nb::arg("schema"), nb::arg("array"), nb::arg("ngram"), nb::arg("lowercase"),
        nb::arg("threads"));
  m.def("pair_jaccard", &pair_jaccard, nb::arg("off_a"), nb::arg("val_a"), nb::arg("ia"), nb::arg("off_b"),
        nb::arg("val_b"), nb::arg("ib"));
  m.def("heuristic_signals", &heuristic_signals, nb::arg("schema"), nb::arg("array"), nb::arg("threads"));
  m.attr("HEURISTIC_SIGNALS") = static_cast<int>(kNumSignals);
  m.def("string_hashes", &string_hashes, nb::arg("schema"), nb::arg("array"), nb::arg("seed"), nb::arg("threads"));
  m.def("hash_token_bytes", &hash_token_bytes, nb::arg("data"), nb::arg("seed"));
  m.def("native_isa", [] { return std::string(native_isa()); });
  m.attr("KERNEL_VERSION") = 1;  // bump when any hash changes (fitted models record it)
}
