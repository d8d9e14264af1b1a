"""curate: data curation for LLM pretraining corpora."""

import os

# MKL (torch's CPU BLAS) picks code paths by memory alignment, so the same matrix product can
# round differently from run to run; its conditional bitwise reproducibility mode makes LM
# scores, proxy-LM training and k-means on CPU reproducible on any x86 machine, for ~10% of
# their speed. Set MKL_CBWR=AUTO yourself to trade that back. (Before torch loads, or no effect.)
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

__version__ = "0.1.0"
