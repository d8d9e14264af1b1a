"""Pure-Python statement of the kernel's quality signals (src/native/heuristics.hpp)."""

from __future__ import annotations

import re

WS = b" \t\n\r\x0b\x0c"
STOP = {b"the", b"be", b"to", b"of", b"and", b"that", b"have", b"with"}
BULLETS = ["•", "●", "◦", "‣", "⁃", "-", "*", "·"]
TERMINAL = [".", "!", "?", '"', "'", "”", "’", "…"]
POLICY = [
    b"terms of use",
    b"privacy policy",
    b"cookie policy",
    b"uses cookies",
    b"use of cookies",
    b"use cookies",
]


def nchars(b: bytes) -> int:
    return sum(1 for x in b if (x & 0xC0) != 0x80)


def signals(p: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    words = re.findall(rb"[^ \t\n\r\x0b\x0c]+", p)
    lines = [seg.strip(WS) for seg in p.split(b"\n")]
    lines = [ln for ln in lines if ln]
    paras = [seg.strip(WS) for seg in re.split(rb"\n[ \t\r]*\n", p)]
    paras = [x for x in paras if x]
    chars = nchars(p)
    nw = len(words)
    out["words"] = nw
    out["chars"] = chars
    out["lines"] = len(lines)
    wchars = [nchars(w) for w in words]
    total_wchars = sum(wchars)
    lower = [w.lower() for w in words]
    alpha = sum(1 for w in words if any(c >= 0x80 or (65 <= c <= 90) or (97 <= c <= 122) for c in w))
    out["mean_word_length"] = total_wchars / nw if nw else 0.0
    out["alpha_words_ratio"] = alpha / nw if nw else 0.0
    out["newline_word_ratio"] = p.count(b"\n") / nw if nw else 0.0
    out["stop_words"] = sum(1 for w in lower if w in STOP)
    symbols = sentences = 0
    i = 0
    while i < len(p):
        c = p[i]
        if c == 0x23:
            symbols += 1
        if c == 0x2E and i + 2 < len(p) and p[i + 1] == 0x2E and p[i + 2] == 0x2E:
            symbols += 1
            i += 3
            continue
        if p[i : i + 3] == "…".encode():
            symbols += 1
        if c in b".!?" and (i + 1 == len(p) or p[i + 1] in WS):
            sentences += 1
        i += 1
    out["symbol_word_ratio"] = symbols / nw if nw else 0.0
    out["sentences"] = sentences
    out["has_curly_bracket"] = 1.0 if b"{" in p else 0.0
    out["has_lorem_ipsum"] = 1.0 if b"lorem ipsum" in p.lower() else 0.0
    nl = len(lines)
    bullets = sum(1 for ln in lines if any(ln.startswith(b.encode()) for b in BULLETS))
    ellipsis = sum(1 for ln in lines if ln.endswith(b"...") or ln.endswith("…".encode()))
    terminal = sum(1 for ln in lines if any(ln.endswith(t.encode()) for t in TERMINAL))
    short = sum(1 for ln in lines if nchars(ln) <= 30)
    for name, v in (
        ("bullet_lines_ratio", bullets),
        ("ellipsis_lines_ratio", ellipsis),
        ("terminal_punct_lines_ratio", terminal),
        ("short_lines_ratio", short),
    ):
        out[name] = v / nl if nl else 0.0
    out["javascript_lines"] = sum(1 for ln in lines if b"javascript" in ln.lower())
    out["policy_lines"] = sum(1 for ln in lines if any(x in ln.lower() for x in POLICY))
    for name, items in (("line", lines), ("para", paras)):
        seen: set[bytes] = set()
        dup = dup_chars = 0
        for it in items:
            if it in seen:
                dup += 1
                dup_chars += nchars(it)
            seen.add(it)
        out[f"dup_{name}_frac"] = dup / len(items) if items else 0.0
        out[f"dup_{name}_char_frac"] = dup_chars / chars if chars else 0.0
    for n in (2, 3, 4):
        out[f"top_{n}gram_char_frac"] = 0.0
        if nw < n or total_wchars == 0:
            continue
        counts: dict[tuple[bytes, ...], int] = {}
        best, best_at = 0, 0
        for i in range(nw - n + 1):
            key = tuple(lower[i : i + n])
            counts[key] = counts.get(key, 0) + 1
            if counts[key] > best:
                best, best_at = counts[key], i
        if best > 1:
            out[f"top_{n}gram_char_frac"] = best * sum(wchars[best_at : best_at + n]) / total_wchars
    for n in range(5, 11):
        out[f"dup_{n}gram_char_frac"] = 0.0
        if nw < n or total_wchars == 0:
            continue
        seen_grams: set[tuple[bytes, ...]] = set()
        covered = [False] * nw
        for i in range(nw - n + 1):
            key = tuple(lower[i : i + n])
            if key in seen_grams:
                for j in range(i, i + n):
                    covered[j] = True
            seen_grams.add(key)
        out[f"dup_{n}gram_char_frac"] = (
            sum(c for c, cov in zip(wchars, covered, strict=True) if cov) / total_wchars
        )
    return out
