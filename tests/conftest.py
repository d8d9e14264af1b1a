from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def python_source_texts() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_text(encoding="utf-8") for p in sorted(root.glob("[a-m]*.py"))[:40]]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real multi-domain pool built from this machine's text (see curate.testing)."""
    from curate.testing import build_corpus

    return build_corpus(
        tmp_path_factory.mktemp("corpus"), max_bytes_per_domain=400_000, shards=4, row_group_size=64
    )
