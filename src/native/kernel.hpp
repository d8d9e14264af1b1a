// Hashed n-gram kernel: tokeniser, hash and per-document visitors over Arrow string arrays.
// Everything here is header-only so that the binding file stays thin.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace curate {

// ---------------------------------------------------------------- Arrow C data interface
struct ArrowSchema {
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  ArrowSchema** children;
  ArrowSchema* dictionary;
  void (*release)(ArrowSchema*);
  void* private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  ArrowArray** children;
  ArrowArray* dictionary;
  void (*release)(ArrowArray*);
  void* private_data;
};

enum class StringLayout { Utf8, LargeUtf8, Utf8View, Null, Chunked };

// Read-only view of one Arrow string column; no copies of the character data.
struct StringColumn {
  StringLayout layout;
  int64_t length = 0;
  int64_t offset = 0;
  const uint8_t* validity = nullptr;
  const int32_t* offsets32 = nullptr;
  const int64_t* offsets64 = nullptr;
  const uint8_t* data = nullptr;
  const uint8_t* views = nullptr;                 // string_view: 16-byte views
  std::vector<const uint8_t*> variadic;           // string_view: data buffers
  std::vector<StringColumn> parts;                // chunked: the chunks, in order
  std::vector<int64_t> starts;                    // chunked: each chunk's first row

  // One column over several arrays (the chunks of a chunked array), so that a kernel starts its
  // threads and tables once for all of them.
  static StringColumn chunked(std::vector<StringColumn> chunks) {
    StringColumn col;
    col.layout = StringLayout::Chunked;
    for (auto& c : chunks) {
      col.starts.push_back(col.length);
      col.length += c.length;
    }
    col.parts = std::move(chunks);
    return col;
  }

  static StringColumn from_c(const ArrowSchema* schema, const ArrowArray* array) {
    StringColumn col;
    std::string fmt = schema->format ? schema->format : "";
    if (fmt == "n") {  // an all-null column (e.g. inferred from an empty list): every document is empty
      col.layout = StringLayout::Null;
      col.length = array->length;
      return col;
    } else if (fmt == "u" || fmt == "z") {
      col.layout = StringLayout::Utf8;
    } else if (fmt == "U" || fmt == "Z") {
      col.layout = StringLayout::LargeUtf8;
    } else if (fmt == "vu" || fmt == "vz") {
      col.layout = StringLayout::Utf8View;
    } else {
      throw std::invalid_argument("expected an Arrow string, large_string or string_view array (or binary), got format '" + fmt + "'");
    }
    if (array->release == nullptr) throw std::invalid_argument("Arrow array was already released");
    col.length = array->length;
    col.offset = array->offset;
    col.validity = array->null_count == 0 ? nullptr : static_cast<const uint8_t*>(array->buffers[0]);
    if (col.layout == StringLayout::Utf8View) {
      if (array->n_buffers < 3) throw std::invalid_argument("malformed string_view array: fewer than 3 buffers");
      col.views = static_cast<const uint8_t*>(array->buffers[1]);
      for (int64_t b = 2; b < array->n_buffers - 1; ++b)
        col.variadic.push_back(static_cast<const uint8_t*>(array->buffers[b]));
    } else {
      if (array->n_buffers != 3) throw std::invalid_argument("malformed string array: expected 3 buffers");
      if (col.layout == StringLayout::Utf8)
        col.offsets32 = static_cast<const int32_t*>(array->buffers[1]);
      else
        col.offsets64 = static_cast<const int64_t*>(array->buffers[1]);
      col.data = static_cast<const uint8_t*>(array->buffers[2]);
    }
    return col;
  }

  bool is_valid(int64_t i) const {
    if (layout == StringLayout::Chunked) return true;  // the chunk's own get() checks
    if (!validity) return true;
    int64_t j = i + offset;
    return (validity[j >> 3] >> (j & 7)) & 1;
  }

  // Pointer and byte length of document i (nulls give length 0).
  void get(int64_t i, const uint8_t*& ptr, int64_t& len) const {
    if (layout == StringLayout::Chunked) {
      const size_t k = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), i) - starts.begin()) - 1;
      parts[k].get(i - starts[k], ptr, len);
      return;
    }
    if (layout == StringLayout::Null || !is_valid(i)) { ptr = nullptr; len = 0; return; }
    int64_t j = i + offset;
    switch (layout) {
      case StringLayout::Utf8:
        ptr = data + offsets32[j];
        len = offsets32[j + 1] - offsets32[j];
        return;
      case StringLayout::LargeUtf8:
        ptr = data + offsets64[j];
        len = offsets64[j + 1] - offsets64[j];
        return;
      case StringLayout::Utf8View: {
        const uint8_t* v = views + 16 * j;
        int32_t n;
        std::memcpy(&n, v, 4);
        len = n;
        if (n <= 12) {
          ptr = v + 4;
        } else {
          int32_t buf, off;
          std::memcpy(&buf, v + 8, 4);
          std::memcpy(&off, v + 12, 4);
          ptr = variadic.at(static_cast<size_t>(buf)) + off;
        }
        return;
      }
      case StringLayout::Null:
      case StringLayout::Chunked:
        break;
    }
    ptr = nullptr;
    len = 0;
  }
};

// ---------------------------------------------------------------- hashing
inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

constexpr uint64_t kMulA = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kMulB = 0xD6E8FEB86659FD93ULL;

// Streaming token hash: bytes are packed little-endian into 8-byte words; each full word is
// folded in with one multiply, so the per-byte work stays off the multiply's dependency chain.
struct TokenHasher {
  uint64_t h, acc;
  uint32_t nacc;
  uint64_t len;
  explicit TokenHasher(uint64_t seed) { reset(seed); }
  inline void reset(uint64_t seed) { h = seed ^ kMulA; acc = 0; nacc = 0; len = 0; }
  inline void push(uint8_t b) {
    acc |= static_cast<uint64_t>(b) << (8 * nacc);
    ++len;
    if (++nacc == 8) {
      h = (h ^ acc) * kMulB;
      h ^= h >> 32;
      acc = 0;
      nacc = 0;
    }
  }
  inline uint64_t finish() {
    if (nacc) {
      h = (h ^ acc) * kMulB;
      h ^= h >> 32;
    }
    return fmix64(h ^ len);
  }
};

// Hash of the n-gram made of token hashes t[0..k) (k >= 2); unigrams use the token hash itself.
// Token hashes are already well mixed, so a multiply-add chain and one finaliser suffice.
inline uint64_t ngram_hash(const uint64_t* t, int k) {
  uint64_t g = t[0] ^ (static_cast<uint64_t>(k) * kMulA);
  for (int j = 1; j < k; ++j) g = g * kMulB + t[j];
  return fmix64(g);
}

// Map a 64-bit hash to [0, m) without a division (Lemire's multiply-shift).
inline uint64_t bucket_of(uint64_t h, uint64_t m) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(h) * m) >> 64);
}

// ---------------------------------------------------------------- tokeniser
enum CharClass : uint8_t { kSep = 0, kWord = 1, kPunct = 2 };

struct AsciiTables {
  uint8_t cls[128];
  uint8_t lower[128];
  AsciiTables() {
    for (int c = 0; c < 128; ++c) {
      lower[c] = static_cast<uint8_t>((c >= 'A' && c <= 'Z') ? c + 32 : c);
      if (c <= 0x20 || c == 0x7F) cls[c] = kSep;
      else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') cls[c] = kWord;
      else cls[c] = kPunct;
    }
  }
};
inline const AsciiTables& ascii_tables() {
  static const AsciiTables t;
  return t;
}

inline uint8_t classify_cp(uint32_t cp) {
  // Unicode separators (Python's str.isspace set beyond ASCII).
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
      cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
    return kSep;
  // Common punctuation and symbols; everything else (letters, digits, CJK, emoji) is word.
  if (cp >= 0xA1 && cp <= 0xBF) {
    if (cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA || (cp >= 0xBC && cp <= 0xBE))
      return kWord;
    return kPunct;
  }
  if (cp == 0xD7 || cp == 0xF7) return kPunct;
  if ((cp >= 0x2010 && cp <= 0x2027) || (cp >= 0x2030 && cp <= 0x205E)) return kPunct;
  if ((cp >= 0x3001 && cp <= 0x3003) || (cp >= 0x3008 && cp <= 0x3011)) return kPunct;
  if ((cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20)) return kPunct;
  return kWord;
}

// Simple case folding for the scripts where it is a fixed offset (Latin-1, Latin Extended-A
// pairs, Greek, Cyrillic); other scripts are left as they are.
inline uint32_t lower_cp(uint32_t cp) {
  if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 0x20;
  if (cp >= 0x100 && cp <= 0x137 && (cp & 1) == 0) return cp + 1;
  if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 0x20;
  if (cp >= 0x410 && cp <= 0x42F) return cp + 0x20;
  if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
  return cp;
}

// Decode one UTF-8 sequence at p (n bytes left). Returns its length, or 0 if invalid.
inline int decode_utf8(const uint8_t* p, int64_t n, uint32_t& cp) {
  uint8_t b0 = p[0];
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (n < 2 || (p[1] & 0xC0) != 0x80) return 0;
    cp = ((b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if (b0 == 0xE0 && p[1] < 0xA0) return 0;   // overlong
    if (b0 == 0xED && p[1] > 0x9F) return 0;   // surrogates
    cp = ((b0 & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
    if (b0 == 0xF0 && p[1] < 0x90) return 0;
    if (b0 == 0xF4 && p[1] > 0x8F) return 0;
    cp = ((b0 & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
    return 4;
  }
  return 0;
}

inline void push_utf8(TokenHasher& th, uint32_t cp) {
  if (cp < 0x80) {
    th.push(static_cast<uint8_t>(cp));
  } else if (cp < 0x800) {
    th.push(static_cast<uint8_t>(0xC0 | (cp >> 6)));
    th.push(static_cast<uint8_t>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    th.push(static_cast<uint8_t>(0xE0 | (cp >> 12)));
    th.push(static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F)));
    th.push(static_cast<uint8_t>(0x80 | (cp & 0x3F)));
  } else {
    th.push(static_cast<uint8_t>(0xF0 | (cp >> 18)));
    th.push(static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F)));
    th.push(static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F)));
    th.push(static_cast<uint8_t>(0x80 | (cp & 0x3F)));
  }
}

struct HashSpec {
  uint64_t buckets = 10000;
  int order = 2;
  bool lowercase = true;
  uint64_t seed = 0;
  bool words_only = false;  // drop punctuation tokens (MinHash shingles)
};

constexpr int kMaxOrder = 8;

// ---------------------------------------------------------------- byte classes, 8 at a time
// SWAR over 8 bytes that are all ASCII (< 0x80): a byte's high bit in the result is set when
// the byte is in the class. Adding (0x80 - c) sets the high bit exactly when byte >= c, with no
// carry into the next byte since every byte is below 0x80.
constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHigh = 0x8080808080808080ULL;

inline uint64_t swar_ge(uint64_t x, unsigned c) { return (x + (0x80u - c) * kOnes) & kHigh; }
inline uint64_t swar_range(uint64_t x, unsigned lo, unsigned hi) { return swar_ge(x, lo) & ~swar_ge(x, hi + 1); }

// The high bit of each of the 8 bytes, gathered into the low 8 bits (byte k -> bit k).
inline uint32_t gather_high_bits(uint64_t m) { return static_cast<uint32_t>(((m >> 7) * 0x0102040810204080ULL) >> 56); }

inline uint64_t ascii_word_bytes(uint64_t x) {
  return swar_range(x, '0', '9') | swar_range(x, 'A', 'Z') | swar_range(x, 'a', 'z') | swar_range(x, '_', '_');
}
inline uint64_t ascii_sep_bytes(uint64_t x) { return (kHigh & ~swar_ge(x, 0x21)) | swar_ge(x, 0x7F); }
// ASCII upper-case letters to lower case, 8 at a time (0x80 >> 2 is the 0x20 case bit).
inline uint64_t ascii_lower(uint64_t x) { return x | (swar_range(x, 'A', 'Z') >> 2); }

// The n (<= 8) bytes at p, zero-padded; reads a whole word when 8 bytes remain before `end`
// (a fixed-size load the compiler inlines), else only the n bytes.
inline uint64_t load_le(const uint8_t* p, int64_t n, const uint8_t* end) {
  uint64_t w = 0;
  if (end - p >= 8) {
    std::memcpy(&w, p, 8);
    return n >= 8 ? w : (w & ((1ULL << (8 * n)) - 1));
  }
  std::memcpy(&w, p, static_cast<size_t>(n));
  return w;
}

// Appends n ASCII bytes to a token hash a word at a time: the same state as n push() calls.
inline void push_ascii(TokenHasher& th, const uint8_t* p, int64_t n, bool lowercase, const uint8_t* end) {
  while (n > 0) {
    const int64_t take = std::min<int64_t>(n, 8 - th.nacc);
    uint64_t w = load_le(p, take, end);
    if (lowercase) w = ascii_lower(w);
    th.acc |= w << (8 * th.nacc);
    th.nacc += static_cast<uint32_t>(take);
    th.len += static_cast<uint64_t>(take);
    p += take;
    n -= take;
    if (th.nacc == 8) {
      th.h = (th.h ^ th.acc) * kMulB;
      th.h ^= th.h >> 32;
      th.acc = 0;
      th.nacc = 0;
    }
  }
}

// Word and punctuation bitmasks (bit k: byte k) of a window of len <= 64 bytes; false (masks
// unusable) when a byte is not ASCII. SSE2 on x86-64 (16 bytes at a time), SWAR elsewhere.
//
// It also writes the window's bytes to `folded` (72 bytes: the window, then zeros to pad an
// 8-byte load), with A-Z lower-cased when `lowercase`. A-Z are word bytes, so that lower-cases
// word tokens only, as the reference does; tokens then load their bytes from it ready to hash.
inline bool classify_window(const uint8_t* q, int64_t len, const uint8_t* end, bool lowercase, uint8_t* folded,
                            uint64_t& word, uint64_t& punct) {
#if defined(__SSE2__)
  if (end - q >= 64) {
    const __m128i lo_digit = _mm_set1_epi8('0' - 1), hi_digit = _mm_set1_epi8('9' + 1);
    const __m128i lo_alpha = _mm_set1_epi8('a' - 1), hi_alpha = _mm_set1_epi8('z' + 1);
    const __m128i case_bit = _mm_set1_epi8(0x20), underscore = _mm_set1_epi8('_');
    const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7F);
    const __m128i lo_upper = _mm_set1_epi8('A' - 1), hi_upper = _mm_set1_epi8('Z' + 1);
    const __m128i fold_bit = lowercase ? case_bit : _mm_setzero_si128();
    uint64_t nonascii = 0;
    for (int k = 0; k < 64; k += 16) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k));
      const __m128i any_case = _mm_or_si128(x, case_bit);  // letters to lower case (others: unused)
      const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, lo_digit), _mm_cmpgt_epi8(hi_digit, x));
      const __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(any_case, lo_alpha), _mm_cmpgt_epi8(hi_alpha, any_case));
      const __m128i upper = _mm_and_si128(_mm_cmpgt_epi8(x, lo_upper), _mm_cmpgt_epi8(hi_upper, x));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(folded + k), _mm_or_si128(x, _mm_and_si128(upper, fold_bit)));
      const __m128i w = _mm_or_si128(_mm_or_si128(digit, alpha), _mm_cmpeq_epi8(x, underscore));
      // separators: bytes 0x00-0x20 and 0x7F (signed compare: bytes >= 0x80 are negative, and
      // are caught by the ASCII check)
      const __m128i sep = _mm_or_si128(_mm_cmpgt_epi8(_mm_add_epi8(space, _mm_set1_epi8(1)), x), _mm_cmpeq_epi8(x, del));
      const uint64_t mw = static_cast<uint32_t>(_mm_movemask_epi8(w));
      const uint64_t ms = static_cast<uint32_t>(_mm_movemask_epi8(sep));
      nonascii |= static_cast<uint32_t>(_mm_movemask_epi8(x));
      word |= mw << k;
      punct |= (~(mw | ms) & 0xFFFFULL) << k;
    }
    if (nonascii) return false;
    if (len < 64) {
      const uint64_t valid = (1ULL << len) - 1;
      word &= valid;
      punct &= valid;
    }
    return true;
  }
#endif
  for (int64_t k = 0; k < len; k += 8) {
    const uint64_t x = load_le(q + k, std::min<int64_t>(8, len - k), end);
    if (x & kHigh) return false;
    const uint64_t lowered = lowercase ? ascii_lower(x) : x;
    std::memcpy(folded + k, &lowered, 8);  // zero past len: load_le zero-pads
    const uint64_t w = ascii_word_bytes(x), s = ascii_sep_bytes(x);
    word |= static_cast<uint64_t>(gather_high_bits(w)) << k;
    punct |= static_cast<uint64_t>(gather_high_bits(kHigh & ~w & ~s)) << k;
  }
  return true;
}

// Calls emit(token_hash) for every token of the document: maximal runs of word characters
// and maximal runs of punctuation characters; separators end a token and are dropped.
//
// The document is read in windows of 64 bytes. A window of ASCII bytes is classified 8 bytes at
// a time into word and punctuation bitmasks, and its runs are walked with bit scans and hashed
// a word at a time; a window holding other bytes is read code point by code point. Both keep
// the same state (the current class and the token hash), so the tokens and their hashes are
// those of the byte-at-a-time definition (tests/reference.py), whatever the mix.
template <class Emit>
inline void for_each_token(const uint8_t* p, int64_t n, const HashSpec& spec, Emit&& emit) {
  const AsciiTables& T = ascii_tables();
  TokenHasher th(spec.seed);
  uint8_t cur = kSep;
  alignas(16) uint8_t folded[72] = {};  // the current window's bytes, then zeros (classify_window)
  auto switch_to = [&](uint8_t cls) {
    if (cur == kWord || (cur == kPunct && !spec.words_only)) emit(th.finish());
    th.reset(spec.seed);
    cur = cls;
  };
  int64_t i = 0;
  while (i < n) {
    const int64_t len = std::min<int64_t>(64, n - i);
    const uint8_t* q = p + i;
    uint64_t word = 0, punct = 0;  // bit k: byte i + k is a word / punctuation byte
    const bool ascii = classify_window(q, len, p + n, spec.lowercase, folded, word, punct);
    if (ascii) {
      const uint64_t valid = len == 64 ? ~0ULL : ((1ULL << len) - 1);
      word &= valid;
      punct = spec.words_only ? 0 : (punct & valid);  // MinHash: punctuation only separates words
      // Each run of one class has one start bit and one end bit (its last byte), so the k-th
      // start pairs with the k-th end: no per-token class test to find where a token ends.
      uint64_t starts = (word & ~(word << 1)) | (punct & ~(punct << 1));
      uint64_t ends = (word & ~(word >> 1)) | (punct & ~(punct >> 1));
      bool open = cur == kWord || (cur == kPunct && !spec.words_only);  // a token runs into this window
      if (open) {
        const uint64_t same = cur == kWord ? word : punct;
        if (same & 1) {  // the token goes on: its run's start and end belong to it
          starts &= ~1ULL;
          const uint64_t other = ~same & valid;
          const int64_t end = other ? __builtin_ctzll(other) : len;
          push_ascii(th, q, end, spec.lowercase && cur == kWord, p + n);
          if (end == len) {
            i += len;
            continue;
          }
          ends &= ends - 1;
        }
        emit(th.finish());
        th.reset(spec.seed);
        cur = kSep;
      } else if (cur != kSep) {  // a punctuation run under words_only: never emitted, but hashed
        th.reset(spec.seed);
        cur = kSep;
      }
      const uint64_t fresh = th.h;  // a reset hasher's state: every token here starts from it
      for (; starts; starts &= starts - 1, ends &= ends - 1) {
        const int64_t s = __builtin_ctzll(starts);
        const int64_t end = __builtin_ctzll(ends) + 1;
        const int64_t size = end - s;
        if (end < len && size <= 8) {  // most tokens: one word of bytes, hashed straight away
          uint64_t raw;
          std::memcpy(&raw, folded + s, 8);
          uint64_t h = (fresh ^ (raw & (~0ULL >> (64 - 8 * size)))) * kMulB;
          h ^= h >> 32;
          emit(fmix64(h ^ static_cast<uint64_t>(size)));
          continue;
        }
        const bool is_word = (word >> s) & 1;
        // ASCII punctuation has no case: only word tokens are lower-cased
        push_ascii(th, q + s, size, spec.lowercase && is_word, p + n);
        if (end < len) {
          emit(th.finish());
          th.reset(spec.seed);
        } else {
          cur = is_word ? kWord : kPunct;  // it runs into the next window
        }
      }
      i += len;
      continue;
    }
    const int64_t stop = i + len;
    while (i < stop) {  // code point by code point; may end a few bytes past the window
      uint8_t b = p[i];
      uint8_t cls;
      int step;
      uint32_t cp = 0;
      if (b < 0x80) {
        cls = T.cls[b];
        step = 1;
      } else {
        step = decode_utf8(p + i, n - i, cp);
        if (step == 0) {  // invalid byte: part of a word, hashed as it is
          cls = kWord;
          step = 1;
        } else {
          cls = classify_cp(cp);
        }
      }
      if (cls != cur) switch_to(cls);
      if (cls != kSep) {
        if (b < 0x80) {
          th.push(spec.lowercase ? T.lower[b] : b);
        } else if (cp == 0) {
          th.push(b);
        } else if (spec.lowercase) {
          uint32_t lc = lower_cp(cp);
          if (lc == cp) {
            for (int k = 0; k < step; ++k) th.push(p[i + k]);
          } else {
            push_utf8(th, lc);
          }
        } else {
          for (int k = 0; k < step; ++k) th.push(p[i + k]);
        }
      }
      i += step;
    }
  }
  if (cur == kWord || (cur == kPunct && !spec.words_only)) emit(th.finish());
}

// Calls emit(hash) with the 64-bit hash of every n-gram of order 1..spec.order (before it is
// mapped to a bucket, so that one tokenisation can feed tables of several sizes); returns the
// number of tokens.
template <class Emit>
inline int64_t for_each_ngram_hash(const uint8_t* p, int64_t n, const HashSpec& spec, Emit&& emit) {
  int64_t ntok = 0;
  if (spec.order == 1) {
    for_each_token(p, n, spec, [&](uint64_t h) {
      ++ntok;
      emit(h);
    });
    return ntok;
  }
  if (spec.order == 2) {  // the common case, without the general window's loops
    uint64_t prev = 0;
    const uint64_t salt = 2 * kMulA;
    for_each_token(p, n, spec, [&](uint64_t h) {
      emit(h);
      if (ntok > 0) emit(fmix64((prev ^ salt) * kMulB + h));
      prev = h;
      ++ntok;
    });
    return ntok;
  }
  uint64_t ring[kMaxOrder];  // the last `filled` token hashes, the current one last
  int filled = 0;
  const int order = spec.order;
  for_each_token(p, n, spec, [&](uint64_t h) {
    if (filled < order) {
      ring[filled++] = h;
    } else {
      for (int j = 0; j + 1 < order; ++j) ring[j] = ring[j + 1];
      ring[order - 1] = h;
    }
    ++ntok;
    emit(h);
    for (int k = 2; k <= filled; ++k) emit(ngram_hash(ring + (filled - k), k));
  });
  return ntok;
}

// Calls emit(bucket) for every n-gram of order 1..spec.order; returns the number of tokens.
template <class Emit>
inline int64_t for_each_ngram(const uint8_t* p, int64_t n, const HashSpec& spec, Emit&& emit) {
  const uint64_t m = spec.buckets;
  return for_each_ngram_hash(p, n, spec, [&](uint64_t h) { emit(bucket_of(h, m)); });
}

// ---------------------------------------------------------------- MinHash
// Permutation i maps a 64-bit shingle hash x to (a_i * x + b_i) >> 32 (multiply-shift, a_i odd);
// the signature keeps the minimum per permutation. Shingles are word n-grams (punctuation
// dropped); a document with fewer words than n has one shingle of all its words.
struct MinHashParams {
  std::vector<uint64_t> a, b;
  int ngram = 5;
  explicit MinHashParams(int num_perm, int ngram_, uint64_t seed) : a(num_perm), b(num_perm), ngram(ngram_) {
    uint64_t state = seed ^ 0x6D696E68617368ULL;  // splitmix64 stream
    auto next = [&]() {
      state += 0x9E3779B97F4A7C15ULL;
      return fmix64(state);
    };
    for (int i = 0; i < num_perm; ++i) {
      a[i] = next() | 1ULL;
      b[i] = next();
    }
  }
};

// Calls emit(h) with the 64-bit hash of each word `ngram`-shingle of a document, in order
// (repeats included); a document with fewer words than `ngram` has one shingle of all its words.
template <class Emit>
inline void for_each_shingle(const uint8_t* p, int64_t n, const HashSpec& spec, int ngram, Emit&& emit) {
  uint64_t ring[kMaxOrder];
  int filled = 0;
  const int k = ngram;
  for_each_token(p, n, spec, [&](uint64_t h) {
    if (filled < k) {
      ring[filled++] = h;
    } else {
      for (int j = 0; j + 1 < k; ++j) ring[j] = ring[j + 1];
      ring[k - 1] = h;
    }
    if (filled == k) emit(k == 1 ? ring[0] : ngram_hash(ring, k));
  });
  if (filled > 0 && filled < k) emit(filled == 1 ? ring[0] : ngram_hash(ring, filled));
}

inline void minhash_document(const uint8_t* p, int64_t n, const HashSpec& spec, const MinHashParams& mh, uint32_t* sig) {
  const int np = static_cast<int>(mh.a.size());
  for (int i = 0; i < np; ++i) sig[i] = 0xFFFFFFFFu;
  const uint64_t* a = mh.a.data();
  const uint64_t* b = mh.b.data();
  for_each_shingle(p, n, spec, mh.ngram, [&](uint64_t x) {
    for (int i = 0; i < np; ++i) {
      const uint32_t v = static_cast<uint32_t>((a[i] * x + b[i]) >> 32);
      sig[i] = v < sig[i] ? v : sig[i];
    }
  });
}

// The distinct shingle hashes of a document, sorted (the set MinHash estimates Jaccard over).
inline void shingle_set(const uint8_t* p, int64_t n, const HashSpec& spec, int ngram, std::vector<uint64_t>& out) {
  out.clear();
  for_each_shingle(p, n, spec, ngram, [&](uint64_t x) { out.push_back(x); });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

// |A ∩ B| / |A ∪ B| of two sorted, distinct ranges (0 when both are empty).
inline double sorted_jaccard(const uint64_t* a, int64_t na, const uint64_t* b, int64_t nb) {
  if (na + nb == 0) return 0.0;
  int64_t i = 0, j = 0, common = 0;
  while (i < na && j < nb) {
    if (a[i] < b[j]) {
      ++i;
    } else if (b[j] < a[i]) {
      ++j;
    } else {
      ++common;
      ++i;
      ++j;
    }
  }
  return static_cast<double>(common) / static_cast<double>(na + nb - common);
}

// ---------------------------------------------------------------- instruction-set dispatch
// Every block body is compiled twice: for the baseline ISA the wheel targets, and with BMI1/BMI2
// (tzcnt, blsr, shlx make the token-boundary bitmask walk ~6% faster), picked once per process
// from CPUID. Only integer instructions differ, so both paths give the same bits;
// CURATE_NATIVE_ISA=baseline forces the first (tests compare the two).
#if defined(__x86_64__) && defined(__GNUC__)
inline bool use_bmi2() {
  static const bool yes = [] {
    const char* force = std::getenv("CURATE_NATIVE_ISA");
    if (force && std::strcmp(force, "baseline") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  }();
  return yes;
}
// flatten inlines the whole call tree (tokeniser, hash, visitor) so it is all built for the target
template <class F>
__attribute__((target("bmi,bmi2"), flatten)) void run_bmi2(F& f) {
  f();
}
template <class F>
__attribute__((flatten)) void run_baseline(F& f) {
  f();
}
template <class F>
void run_dispatched(F&& f) {
  if (use_bmi2())
    run_bmi2(f);
  else
    run_baseline(f);
}
inline const char* native_isa() { return use_bmi2() ? "x86-64+bmi2" : "x86-64"; }
#else
template <class F>
void run_dispatched(F&& f) {
  f();
}
inline const char* native_isa() { return "baseline"; }
#endif

// ---------------------------------------------------------------- parallel driver
// Runs body(begin, end) over [0, n) in blocks pulled from a shared counter, so one huge
// document does not stall a whole static partition.
template <class Body>
void parallel_blocks(int64_t n, int threads, Body&& body) {
  auto run = [&body](int64_t b, int64_t e, int t) { run_dispatched([&] { body(b, e, t); }); };
  if (threads <= 1 || n < 2) {
    run(0, n, 0);
    return;
  }
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(256, n / (threads * 8) + 1));
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (;;) {
          int64_t b = next.fetch_add(block);
          if (b >= n) break;
          run(b, std::min(n, b + block), t);
        }
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace curate
