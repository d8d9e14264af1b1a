"""curate: data curation for LLM pretraining corpora."""

import os

# MKL (torch's CPU BLAS) picks code paths by memory alignment, so the same matrix product can
# round differently from run to run; its conditional bitwise reproducibility mode makes LM
# scores, proxy-LM training and k-means on CPU reproducible on any x86 machine, for ~10% of
# their speed. Set MKL_CBWR=AUTO yourself to trade that back. (Before torch loads, or no effect.)
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
# OpenBLAS's threads busy-wait 2^28 cycles (~0.1 s) for work when numpy starts them, and after
# every call: ~0.1 CPU-s per idle core on each command's start. 2^20 cycles keeps them warm
# between the calls of one loop. (Read when numpy loads.)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

__version__ = "0.1.0"
