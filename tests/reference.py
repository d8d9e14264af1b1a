"""A slow, pure-Python statement of what the native kernel computes. Tests compare them exactly."""

from __future__ import annotations

M64 = (1 << 64) - 1
MUL_A = 0x9E3779B97F4A7C15
MUL_B = 0xD6E8FEB86659FD93
SEP, WORD, PUNCT = 0, 1, 2


def fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    k ^= k >> 33
    return k


def token_hash(data: bytes, seed: int = 0) -> int:
    h = seed ^ MUL_A
    for start in range(0, len(data), 8):
        word = int.from_bytes(data[start : start + 8], "little")
        h = ((h ^ word) * MUL_B) & M64
        h ^= h >> 32
    return fmix64(h ^ len(data))


def ngram_hash(hashes: list[int]) -> int:
    g = hashes[0] ^ ((len(hashes) * MUL_A) & M64)
    for t in hashes[1:]:
        g = (g * MUL_B + t) & M64
    return fmix64(g)


def bucket_of(h: int, m: int) -> int:
    return (h * m) >> 64


def _ascii_class(c: int) -> int:
    if c <= 0x20 or c == 0x7F:
        return SEP
    ch = chr(c)
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return WORD
    return PUNCT


SPACES = {0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}
LATIN1_WORDLIKE = {0xAA, 0xB2, 0xB3, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE}


def classify(cp: int) -> int:
    if cp in SPACES:
        return SEP
    if 0xA1 <= cp <= 0xBF:
        return WORD if cp in LATIN1_WORDLIKE else PUNCT
    if cp in (0xD7, 0xF7):
        return PUNCT
    if 0x2010 <= cp <= 0x2027 or 0x2030 <= cp <= 0x205E:
        return PUNCT
    if 0x3001 <= cp <= 0x3003 or 0x3008 <= cp <= 0x3011:
        return PUNCT
    if 0xFF01 <= cp <= 0xFF0F or 0xFF1A <= cp <= 0xFF20:
        return PUNCT
    return WORD


def lower(cp: int) -> int:
    if 0xC0 <= cp <= 0xDE and cp != 0xD7:
        return cp + 0x20
    if 0x100 <= cp <= 0x137 and cp % 2 == 0:
        return cp + 1
    if 0x391 <= cp <= 0x3A9 and cp != 0x3A2:
        return cp + 0x20
    if 0x410 <= cp <= 0x42F:
        return cp + 0x20
    if 0x400 <= cp <= 0x40F:
        return cp + 0x50
    return cp


def decode_one(data: bytes, i: int) -> tuple[int, int] | None:
    """(code point, length) of a valid UTF-8 sequence at i, or None. Same rules as the kernel."""
    b0 = data[i]
    n = len(data) - i

    def cont(k: int) -> bool:
        return n > k and 0x80 <= data[i + k] <= 0xBF

    if 0xC2 <= b0 <= 0xDF:
        return ((b0 & 0x1F) << 6 | (data[i + 1] & 0x3F), 2) if cont(1) else None
    if 0xE0 <= b0 <= 0xEF:
        if not (cont(1) and cont(2)):
            return None
        if (b0 == 0xE0 and data[i + 1] < 0xA0) or (b0 == 0xED and data[i + 1] > 0x9F):
            return None
        return ((b0 & 0x0F) << 12 | (data[i + 1] & 0x3F) << 6 | (data[i + 2] & 0x3F), 3)
    if 0xF0 <= b0 <= 0xF4:
        if not (cont(1) and cont(2) and cont(3)):
            return None
        if (b0 == 0xF0 and data[i + 1] < 0x90) or (b0 == 0xF4 and data[i + 1] > 0x8F):
            return None
        cp = (b0 & 0x07) << 18 | (data[i + 1] & 0x3F) << 12 | (data[i + 2] & 0x3F) << 6 | (data[i + 3] & 0x3F)
        return (cp, 4)
    return None


def tokens(data: bytes, lowercase: bool = True) -> list[bytes]:
    """The byte strings the kernel hashes, in order (already lower-cased)."""
    return [t for _, t in classed_tokens(data, lowercase)]


def word_tokens(data: bytes, lowercase: bool = True) -> list[bytes]:
    """Only the word tokens (MinHash shingles drop punctuation runs)."""
    return [t for cls, t in classed_tokens(data, lowercase) if cls == WORD]


def classed_tokens(data: bytes, lowercase: bool = True) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    cur_cls = SEP
    cur = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b < 0x80:
            cls, step, piece = _ascii_class(b), 1, bytes([b + 32 if lowercase and 65 <= b <= 90 else b])
        else:
            dec = decode_one(data, i)
            if dec is None:
                cls, step, piece = WORD, 1, bytes([b])
            else:
                cp, step = dec
                cls = classify(cp)
                piece = chr(lower(cp) if lowercase else cp).encode("utf-8", "surrogatepass")
        if cls != cur_cls:
            if cur_cls != SEP:
                out.append((cur_cls, bytes(cur)))
            cur = bytearray()
            cur_cls = cls
        if cls != SEP:
            cur += piece
        i += step
    if cur_cls != SEP:
        out.append((cur_cls, bytes(cur)))
    return out


def ngram_buckets(
    data: bytes, *, buckets: int, order: int = 2, lowercase: bool = True, seed: int = 0
) -> list[int]:
    hs = [token_hash(t, seed) for t in tokens(data, lowercase)]
    out = []
    for i in range(len(hs)):
        out.append(bucket_of(hs[i], buckets))
        for k in range(2, order + 1):
            if i - k + 1 >= 0:
                out.append(bucket_of(ngram_hash(hs[i - k + 1 : i + 1]), buckets))
    return out


def minhash(data: bytes, *, num_perm: int, ngram: int, seed: int = 0, lowercase: bool = True) -> list[int]:
    """MinHash signature: word n-gram shingles, permutations (a*x + b) >> 32 from splitmix64."""
    state = seed ^ 0x6D696E68617368
    params = []
    for _ in range(num_perm):
        state = (state + MUL_A) & M64
        a = fmix64(state) | 1
        state = (state + MUL_A) & M64
        params.append((a, fmix64(state)))
    hs = [token_hash(t) for t in word_tokens(data, lowercase)]
    if not hs:
        return [0xFFFFFFFF] * num_perm
    if len(hs) < ngram:
        shingles = [hs[0] if len(hs) == 1 else ngram_hash(hs)]
    else:
        shingles = [
            hs[i] if ngram == 1 else ngram_hash(hs[i - ngram + 1 : i + 1]) for i in range(ngram - 1, len(hs))
        ]
    return [min(((a * x + b) & M64) >> 32 for x in shingles) for a, b in params]
