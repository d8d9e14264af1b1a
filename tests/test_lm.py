"""LM scoring with a tiny GPT-2 built and saved here, loaded back through the real loading code."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curate.errors import StageError  # noqa: E402
from curate.stages.lm import LMScorer, windows  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, python_source_texts: list[str]) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        python_source_texts[:20], vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def reference_losses(folder: Path, texts: list[str]) -> list[float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for t in texts:
        ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out.append(float(model(input_ids=ids, labels=ids).loss))  # one document per forward pass
    return out


TEXTS = [
    "def parse(args):\n    return args",
    "The quick brown fox jumps over the lazy dog.",
    "import os\nimport sys\n\nprint(sys.argv)",
    "x = 1",
    "class Stage:\n    pass\n\n# a comment about the stage",
]


def test_batched_losses_equal_unbatched_reference_and_keep_order(tiny_gpt2: Path) -> None:
    batch = pa.RecordBatch.from_pydict({"text": TEXTS})
    out = LMScorer(model_path=str(tiny_gpt2), device="cpu", max_batch_tokens=64).annotate(batch)
    ref = reference_losses(tiny_gpt2, TEXTS)
    assert np.allclose(out["lm_loss"].to_pylist(), ref, atol=1e-4)
    assert np.allclose(out["lm_perplexity"].to_pylist(), np.exp(ref), rtol=1e-4)


def test_padding_and_batch_composition_do_not_change_losses(tiny_gpt2: Path) -> None:
    one_by_one = [
        LMScorer(model_path=str(tiny_gpt2), device="cpu")
        .annotate(pa.RecordBatch.from_pydict({"text": [t]}))["lm_loss"][0]
        .as_py()
        for t in TEXTS
    ]
    together = (
        LMScorer(model_path=str(tiny_gpt2), device="cpu", max_batch_tokens=10_000)
        .annotate(pa.RecordBatch.from_pydict({"text": list(reversed(TEXTS))}))["lm_loss"]
        .to_pylist()
    )
    assert np.allclose(one_by_one, list(reversed(together)), atol=1e-5)


def test_windows_cover_each_token_once_and_match_a_full_pass(tiny_gpt2: Path) -> None:
    ids = list(range(150))
    segs = windows(0, ids, window=64, stride=32)
    scored = [p for s in segs for p in range(s.first_scored, len(s.ids))]
    assert len(scored) == 149 and all(len(s.ids) <= 64 for s in segs)
    short = TEXTS[0]
    full = LMScorer(model_path=str(tiny_gpt2), device="cpu").annotate(
        pa.RecordBatch.from_pydict({"text": [short]})
    )
    win = LMScorer(model_path=str(tiny_gpt2), device="cpu", window=64).annotate(
        pa.RecordBatch.from_pydict({"text": [short]})
    )
    assert full["lm_loss"][0].as_py() == pytest.approx(win["lm_loss"][0].as_py(), abs=1e-6)
    long_doc = "def f(x):\n    return x + 1\n" * 40
    res = LMScorer(model_path=str(tiny_gpt2), device="cpu").annotate(
        pa.RecordBatch.from_pydict({"text": [long_doc]})
    )
    from transformers import AutoTokenizer

    n = len(AutoTokenizer.from_pretrained(tiny_gpt2)(long_doc, add_special_tokens=False)["input_ids"])
    assert n > 64 and res["lm_tokens"][0].as_py() == n - 1 and math.isfinite(res["lm_loss"][0].as_py())


def test_el2n_matches_brute_force(tiny_gpt2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    text = TEXTS[1]
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    onehot = torch.nn.functional.one_hot(ids[0, 1:], p.shape[-1]).float()
    expected = float(torch.linalg.norm(p - onehot, dim=-1).mean())
    got = LMScorer(model_path=str(tiny_gpt2), device="cpu", el2n=True).annotate(
        pa.RecordBatch.from_pydict({"text": [text]})
    )
    assert got["lm_el2n"][0].as_py() == pytest.approx(expected, abs=1e-5)


def test_empty_and_one_token_documents_are_null_not_nan(tiny_gpt2: Path) -> None:
    out = LMScorer(model_path=str(tiny_gpt2), device="cpu").annotate(
        pa.RecordBatch.from_pydict({"text": ["", None, "x", TEXTS[1]]})
    )
    assert out["lm_loss"].is_valid().to_pylist() == [False, False, False, True]
    assert out["lm_tokens"].to_pylist()[:3] == [0, 0, 0]


def test_bad_models_and_devices(tmp_path: Path, tiny_gpt2: Path) -> None:
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    with pytest.raises(StageError, match="no such model folder"):
        LMScorer(model_path=str(tmp_path / "nope"), device="cpu").setup(None)  # type: ignore[arg-type]
    BertModel(
        BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(StageError, match=r"not a causal language model checkpoint .*BertModel.*missing"):
        LMScorer(model_path=str(tmp_path / "bert"), device="cpu").setup(None)  # type: ignore[arg-type]
    DistilBertModel(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    ).save_pretrained(tmp_path / "db")
    with pytest.raises(StageError, match="not a causal language model"):
        LMScorer(model_path=str(tmp_path / "db"), device="cpu").setup(None)  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(StageError, match="CUDA is not available"):
            LMScorer(model_path=str(tiny_gpt2), device="cuda").setup(None)  # type: ignore[arg-type]


def test_cli_score_lm(tmp_path: Path, tiny_gpt2: Path) -> None:
    pq.write_table(pa.table({"text": TEXTS * 4}), tmp_path / "p.parquet")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate.cli.app",
            "score",
            "lm",
            "--model",
            str(tiny_gpt2),
            str(tmp_path / "p.parquet"),
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--el2n",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    t = pq.read_table(tmp_path / "out")
    assert {"lm_loss", "lm_perplexity", "lm_tokens", "lm_el2n"} <= set(t.column_names)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate.cli.app",
            "score",
            "lm",
            "--model",
            str(tmp_path / "missing"),
            str(tmp_path / "p.parquet"),
            str(tmp_path / "o2"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "no such model folder" in res.stderr and "Traceback" not in res.stderr
