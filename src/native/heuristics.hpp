// Per-document quality signals (Gopher quality and repetition rules, C4 and FineWeb line rules).
// The definitions are written out in tests/reference_heuristics.py, which the tests hold this to.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernel.hpp"

namespace curate {

enum Signal : int {
  kWords = 0,
  kChars,
  kMeanWordLength,
  kSymbolWordRatio,
  kBulletLinesRatio,
  kEllipsisLinesRatio,
  kAlphaWordsRatio,
  kStopWords,
  kDupLineFrac,
  kDupLineCharFrac,
  kDupParaFrac,
  kDupParaCharFrac,
  kTop2gramCharFrac,
  kTop3gramCharFrac,
  kTop4gramCharFrac,
  kDup5gramCharFrac,
  kDup6gramCharFrac,
  kDup7gramCharFrac,
  kDup8gramCharFrac,
  kDup9gramCharFrac,
  kDup10gramCharFrac,
  kLines,
  kTerminalPunctLinesRatio,
  kShortLinesRatio,
  kSentences,
  kHasLoremIpsum,
  kHasCurlyBracket,
  kJavascriptLines,
  kPolicyLines,
  kNewlineWordRatio,
  kNumSignals
};

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
inline bool is_cont(uint8_t c) { return (c & 0xC0) == 0x80; }  // a UTF-8 continuation byte

inline int64_t count_chars(const uint8_t* p, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += !is_cont(p[i]);
  return c;
}

inline bool starts_with(const uint8_t* p, int64_t n, const char* s) {
  const int64_t k = static_cast<int64_t>(std::strlen(s));
  return n >= k && std::memcmp(p, s, static_cast<size_t>(k)) == 0;
}
inline bool ends_with(const uint8_t* p, int64_t n, const char* s) {
  const int64_t k = static_cast<int64_t>(std::strlen(s));
  return n >= k && std::memcmp(p + n - k, s, static_cast<size_t>(k)) == 0;
}

// ASCII case-insensitive search of a lower-case needle.
inline bool contains_ci(const uint8_t* p, int64_t n, const char* needle) {
  const int64_t k = static_cast<int64_t>(std::strlen(needle));
  for (int64_t i = 0; i + k <= n; ++i) {
    int64_t j = 0;
    while (j < k && ascii_tables().lower[p[i + j] & 0x7F] == static_cast<uint8_t>(needle[j]) && p[i + j] < 0x80) ++j;
    if (j == k) return true;
  }
  return false;
}

inline uint64_t hash_bytes(const uint8_t* p, int64_t n, bool lower) {
  TokenHasher th(0);
  const AsciiTables& T = ascii_tables();
  for (int64_t i = 0; i < n; ++i) th.push(lower && p[i] < 0x80 ? T.lower[p[i]] : p[i]);
  return th.finish();
}

struct Span {
  int64_t begin, end;
};

// Trim ASCII whitespace.
inline Span trim(const uint8_t* p, Span s) {
  while (s.begin < s.end && is_ws(p[s.begin])) ++s.begin;
  while (s.end > s.begin && is_ws(p[s.end - 1])) --s.end;
  return s;
}

// An open-addressing counter, reused across documents: several times faster than
// std::unordered_map for n-gram counts. Key 0 marks an empty slot (a key of 0 is counted as 1).
template <typename Key, typename Count>
struct OpenCounter {
  std::vector<Key> keys;
  std::vector<Count> vals;
  uint64_t mask = 0;

  void reset(size_t expected) {
    size_t cap = 16;
    while (cap < 2 * expected + 1) cap <<= 1;
    if (keys.size() < cap || keys.size() > 8 * cap) {  // grow, or shrink after a huge document
      keys.assign(cap, 0);
      vals.assign(cap, 0);
    } else {
      cap = keys.size();
      std::fill(keys.begin(), keys.end(), Key{0});
    }
    mask = cap - 1;
  }
  // Increments the count of `key` and returns the new count.
  Count add(Key key) {
    if (key == 0) key = 1;
    uint64_t i = (static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ULL) >> 7 & mask;
    while (keys[i] != 0 && keys[i] != key) i = (i + 1) & mask;
    if (keys[i] == 0) {
      keys[i] = key;
      vals[i] = 0;
    }
    return ++vals[i];
  }
};

// Keyed by 64-bit hashes (the repetition rules, MinHash shingles).
using FlatCounter = OpenCounter<uint64_t, int64_t>;

struct HeuristicScratch {
  std::vector<Span> words, lines, paras;
  std::vector<uint64_t> word_hash, hashes;
  std::vector<int64_t> word_chars;
  std::vector<uint8_t> covered;
  FlatCounter counts;
};

// Fraction of items (and of their characters) that repeat an earlier item.
inline void duplicate_fraction(const uint8_t* p, const std::vector<Span>& items, HeuristicScratch& s, int64_t total_chars,
                               double& frac, double& char_frac) {
  s.counts.reset(items.size());
  int64_t dup = 0, dup_chars = 0;
  for (const Span& it : items) {
    const uint64_t h = hash_bytes(p + it.begin, it.end - it.begin, false);
    if (s.counts.add(h) > 1) {
      ++dup;
      dup_chars += count_chars(p + it.begin, it.end - it.begin);
    }
  }
  frac = items.empty() ? 0.0 : static_cast<double>(dup) / static_cast<double>(items.size());
  char_frac = total_chars == 0 ? 0.0 : static_cast<double>(dup_chars) / static_cast<double>(total_chars);
}

inline uint64_t words_ngram_hash(const std::vector<uint64_t>& wh, size_t i, int n) {
  uint64_t g = wh[i] ^ (static_cast<uint64_t>(n) * kMulA);
  for (int j = 1; j < n; ++j) g = g * kMulB + wh[i + static_cast<size_t>(j)];
  return fmix64(g);
}

inline void document_signals(const uint8_t* p, int64_t n, HeuristicScratch& s, double* out) {
  static const char* kStop[] = {"the", "be", "to", "of", "and", "that", "have", "with"};
  static const char* kBullets[] = {"\xe2\x80\xa2", "\xe2\x97\x8f", "\xe2\x97\xa6", "\xe2\x80\xa3", "\xe2\x81\x83", "-", "*", "\xc2\xb7"};
  static const char* kTerminal[] = {".", "!", "?", "\"", "'", "\xe2\x80\x9d", "\xe2\x80\x99", "\xe2\x80\xa6"};
  static const char* kPolicy[] = {"terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"};
  for (int k = 0; k < kNumSignals; ++k) out[k] = 0.0;
  s.words.clear();
  s.lines.clear();
  s.paras.clear();
  // words: maximal runs of non-whitespace bytes
  for (int64_t i = 0; i < n;) {
    while (i < n && is_ws(p[i])) ++i;
    const int64_t b = i;
    while (i < n && !is_ws(p[i])) ++i;
    if (i > b) s.words.push_back({b, i});
  }
  // lines: split on \n, trimmed, empty ones dropped; paragraphs: split on blank lines
  int64_t newlines = 0;
  for (int64_t i = 0, b = 0; i <= n; ++i) {
    if (i == n || p[i] == '\n') {
      newlines += i < n;
      Span t = trim(p, {b, i});
      if (t.end > t.begin) s.lines.push_back(t);
      b = i + 1;
    }
  }
  {
    int64_t b = 0, i = 0;
    while (i <= n) {
      // a paragraph break: a newline, optional horizontal whitespace, another newline
      bool brk = false;
      int64_t j = i;
      if (i < n && p[i] == '\n') {
        j = i + 1;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r')) ++j;
        brk = j < n && p[j] == '\n';
      }
      if (i == n || brk) {
        Span t = trim(p, {b, i});
        if (t.end > t.begin) s.paras.push_back(t);
        if (i == n) break;
        while (j < n && is_ws(p[j])) ++j;
        b = i = j;
        continue;
      }
      ++i;
    }
  }
  const int64_t chars = count_chars(p, n);
  const double words = static_cast<double>(s.words.size());
  out[kWords] = words;
  out[kChars] = static_cast<double>(chars);
  out[kLines] = static_cast<double>(s.lines.size());
  s.word_hash.resize(s.words.size());
  s.word_chars.resize(s.words.size());
  int64_t word_chars = 0, alpha = 0, stop = 0;
  const AsciiTables& T = ascii_tables();
  for (size_t w = 0; w < s.words.size(); ++w) {
    const Span sp = s.words[w];
    const int64_t len = sp.end - sp.begin;
    s.word_chars[w] = count_chars(p + sp.begin, len);
    word_chars += s.word_chars[w];
    s.word_hash[w] = hash_bytes(p + sp.begin, len, true);
    bool has_alpha = false;
    for (int64_t i = sp.begin; i < sp.end; ++i) {
      const uint8_t c = p[i];
      if (c >= 0x80 || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
        has_alpha = true;
        break;
      }
    }
    alpha += has_alpha;
    for (const char* sw : kStop) {
      const int64_t k = static_cast<int64_t>(std::strlen(sw));
      if (len == k) {
        int64_t j = 0;
        while (j < k && p[sp.begin + j] < 0x80 && T.lower[p[sp.begin + j]] == static_cast<uint8_t>(sw[j])) ++j;
        if (j == k) {
          ++stop;
          break;
        }
      }
    }
  }
  if (words > 0) {
    out[kMeanWordLength] = static_cast<double>(word_chars) / words;
    out[kAlphaWordsRatio] = static_cast<double>(alpha) / words;
    out[kNewlineWordRatio] = static_cast<double>(newlines) / words;
  }
  out[kStopWords] = static_cast<double>(stop);
  // symbols: '#', "...", and U+2026
  int64_t symbols = 0, sentences = 0, curly = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = p[i];
    if (c == '#') ++symbols;
    if (c == '{') curly = 1;
    if (c == '.' && i + 2 < n && p[i + 1] == '.' && p[i + 2] == '.') {
      ++symbols;
      i += 2;
      continue;
    }
    if (c == 0xE2 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] == 0xA6) ++symbols;
    // a sentence ends at . ! ? followed by whitespace or the end
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == n || is_ws(p[i + 1]))) ++sentences;
  }
  if (words > 0) out[kSymbolWordRatio] = static_cast<double>(symbols) / words;
  out[kSentences] = static_cast<double>(sentences);
  out[kHasCurlyBracket] = static_cast<double>(curly);
  out[kHasLoremIpsum] = contains_ci(p, n, "lorem ipsum") ? 1.0 : 0.0;
  // line rules
  int64_t bullets = 0, ellipsis = 0, terminal = 0, short_lines = 0, js = 0, policy = 0;
  for (const Span& l : s.lines) {
    const uint8_t* q = p + l.begin;
    const int64_t len = l.end - l.begin;
    for (const char* b : kBullets)
      if (starts_with(q, len, b)) {
        ++bullets;
        break;
      }
    if (ends_with(q, len, "...") || ends_with(q, len, "\xe2\x80\xa6")) ++ellipsis;
    for (const char* t : kTerminal)
      if (ends_with(q, len, t)) {
        ++terminal;
        break;
      }
    if (count_chars(q, len) <= 30) ++short_lines;
    if (contains_ci(q, len, "javascript")) ++js;
    for (const char* pol : kPolicy)
      if (contains_ci(q, len, pol)) {
        ++policy;
        break;
      }
  }
  const double lines = static_cast<double>(s.lines.size());
  if (lines > 0) {
    out[kBulletLinesRatio] = static_cast<double>(bullets) / lines;
    out[kEllipsisLinesRatio] = static_cast<double>(ellipsis) / lines;
    out[kTerminalPunctLinesRatio] = static_cast<double>(terminal) / lines;
    out[kShortLinesRatio] = static_cast<double>(short_lines) / lines;
  }
  out[kJavascriptLines] = static_cast<double>(js);
  out[kPolicyLines] = static_cast<double>(policy);
  // repetition: duplicate lines and paragraphs
  duplicate_fraction(p, s.lines, s, chars, out[kDupLineFrac], out[kDupLineCharFrac]);
  duplicate_fraction(p, s.paras, s, chars, out[kDupParaFrac], out[kDupParaCharFrac]);
  // repetition: the most frequent 2/3/4-gram's share of word characters
  const size_t nw = s.words.size();
  for (int ng = 2; ng <= 4; ++ng) {
    if (nw < static_cast<size_t>(ng) || word_chars == 0) continue;
    s.counts.reset(nw);
    int64_t best = 0;
    size_t best_at = 0;
    for (size_t i = 0; i + static_cast<size_t>(ng) <= nw; ++i) {
      const int64_t c = s.counts.add(words_ngram_hash(s.word_hash, i, ng));
      if (c > best) {
        best = c;
        best_at = i;
      }
    }
    if (best > 1) {
      int64_t gram_chars = 0;
      for (int j = 0; j < ng; ++j) gram_chars += s.word_chars[best_at + static_cast<size_t>(j)];
      out[kTop2gramCharFrac + (ng - 2)] = static_cast<double>(best * gram_chars) / static_cast<double>(word_chars);
    }
  }
  // repetition: characters of words inside n-grams that repeat an earlier n-gram (n = 5..10)
  for (int ng = 5; ng <= 10; ++ng) {
    if (nw < static_cast<size_t>(ng) || word_chars == 0) continue;
    s.counts.reset(nw);
    s.covered.assign(nw, 0);
    for (size_t i = 0; i + static_cast<size_t>(ng) <= nw; ++i) {
      if (s.counts.add(words_ngram_hash(s.word_hash, i, ng)) > 1)
        for (int j = 0; j < ng; ++j) s.covered[i + static_cast<size_t>(j)] = 1;
    }
    int64_t dup_chars = 0;
    for (size_t i = 0; i < nw; ++i) dup_chars += s.covered[i] ? s.word_chars[i] : 0;
    out[kDup5gramCharFrac + (ng - 5)] = static_cast<double>(dup_chars) / static_cast<double>(word_chars);
  }
}

}  // namespace curate
