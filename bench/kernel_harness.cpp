// The n-gram kernel without Python or Arrow around it, built with symbols (-g) so that
// `perf record` / `perf annotate` see its hot loops by source line (the wheel's module is
// stripped, and its kernel runs on a std::thread that Python profilers do not see).
// Built and run by bench/profile_kernel.py; reads texts as a bytes file plus int64 offsets.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "embed.hpp"
#include "kernel.hpp"

using namespace curate;

static std::vector<char> slurp(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s tokenise|fit|score|embed DATA OFFSETS REPEATS\n", argv[0]);
    return 2;
  }
  const std::vector<char> bytes = slurp(argv[2]), offsets = slurp(argv[3]);
  const int repeats = std::atoi(argv[4]);
  const auto* off = reinterpret_cast<const int64_t*>(offsets.data());
  const int64_t docs = static_cast<int64_t>(offsets.size() / 8) - 1;
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  HashSpec spec;  // the defaults: 10,000 buckets, unigrams + bigrams, lower-cased
  std::vector<uint32_t> hist(spec.buckets, 0);
  std::vector<double> weights(spec.buckets, 0.5);
  // select --diversity's scoring pass: the score plus a hashed embedding (its defaults: 2^18
  // buckets, dim 256, 8 projection codes) from one tokenisation, as score_and_embed runs it.
  const uint64_t embed_buckets = 1ULL << 18;
  std::vector<double> idf(embed_buckets);
  for (uint64_t b = 0; b < embed_buckets; ++b) idf[b] = 1.0 + static_cast<double>(splitmix_step(b) % 1000) / 100.0;
  std::vector<float> row(256);
  const char mode = argv[1][0];
  double best = 1e30, checksum = 0;  // the checksum keeps the work from being optimised away
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    run_dispatched([&] {
      for (int64_t i = 0; i < docs; ++i) {
        const uint8_t* p = data + off[i];
        const int64_t n = off[i + 1] - off[i];
        if (mode == 't') {
          uint64_t x = 0;
          for_each_token(p, n, spec, [&](uint64_t h) { x ^= h; });
          checksum += static_cast<double>(x & 1);
        } else if (mode == 'f') {
          for_each_ngram(p, n, spec, [&](uint64_t b) { ++hist[b]; });
        } else if (mode == 'e') {
          static Embedder emb(idf.data(), embed_buckets, 256, 8, 1);
          emb.begin();
          double s = 0;
          for_each_ngram_hash(p, n, spec, [&](uint64_t h) {
            s += weights[bucket_of(h, spec.buckets)];
            emb.add(bucket_of(h, embed_buckets));
          });
          emb.finish(row.data());
          checksum += s + row[0];
        } else {
          double s = 0;
          for_each_ngram(p, n, spec, [&](uint64_t b) { s += weights[b]; });
          checksum += s;
        }
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, s);
  }
  std::printf("%.3f %g %u\n", static_cast<double>(off[docs]) / 1e6 / best, checksum, hist[0]);
  return 0;
}
