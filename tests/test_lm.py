"""LM scoring with a tiny GPT-2 built and saved here, loaded back through the real loading code."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
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


# --- the proxy LM trained here (curate train lm) -------------------------------------------------


@pytest.fixture(scope="module")
def proxy_lm(tmp_path_factory: pytest.TempPathFactory, python_source_texts: list[str]) -> Path:
    from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm

    folder = tmp_path_factory.mktemp("proxy")
    report = train_proxy_lm(
        python_source_texts,
        folder,
        ProxyLMConfig(context=64, dim=32, layers=2, heads=2),
        TrainSettings(steps=60, batch_size=8, warmup=5, threads=1),
    )
    assert report.holdout_loss_after < report.holdout_loss_before - 1.0  # it learned Python
    return folder


def test_proxy_lm_scores_through_the_real_loader_and_matches_a_single_pass(proxy_lm: Path) -> None:
    from curate.proxy_lm import load_proxy_lm

    _, model = load_proxy_lm(proxy_lm)
    texts = [*TEXTS, "Ελληνικά κείμενα και 中文"]
    out = LMScorer(model_path=str(proxy_lm), device="cpu", max_batch_tokens=128).annotate(
        pa.RecordBatch.from_pydict({"text": texts})
    )
    for t, got, n in zip(texts, out["lm_loss"].to_pylist(), out["lm_tokens"].to_pylist(), strict=True):
        ids = torch.tensor([list(t.encode("utf-8"))])
        assert ids.shape[1] <= 64 and n == ids.shape[1] - 1
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        ref = float(torch.nn.functional.cross_entropy(logits, ids[0, 1:]))
        assert got == pytest.approx(ref, abs=1e-5)
    # Python reads as more likely than prose to a model trained on Python
    assert out["lm_loss"][2].as_py() < out["lm_loss"][1].as_py()


def test_proxy_lm_long_documents_are_windowed(proxy_lm: Path, python_source_texts: list[str]) -> None:
    doc = python_source_texts[0][:3000]
    out = LMScorer(model_path=str(proxy_lm), device="cpu").annotate(
        pa.RecordBatch.from_pydict({"text": [doc]})
    )
    assert out["lm_tokens"][0].as_py() == len(doc.encode()) - 1
    assert math.isfinite(out["lm_loss"][0].as_py())


def test_proxy_lm_training_is_reproducible(tmp_path: Path, python_source_texts: list[str]) -> None:
    from safetensors.torch import load_file

    from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm

    cfg = ProxyLMConfig(context=32, dim=16, layers=1, heads=2)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train_proxy_lm(
            python_source_texts[:5],
            tmp_path / name,
            cfg,
            TrainSettings(steps=5, batch_size=4, seed=seed, threads=1),
        )
    a, b, c = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_proxy_lm_bad_folders(tmp_path: Path, proxy_lm: Path) -> None:
    import json
    import shutil

    from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm

    def broken(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(proxy_lm, folder)
        return folder

    f = broken("noweights")
    (f / "model.safetensors").unlink()
    with pytest.raises(StageError, match=r"model\.safetensors is missing"):
        LMScorer(model_path=str(f), device="cpu").setup(None)  # type: ignore[arg-type]
    f = broken("mismatch")
    meta = json.loads((f / "curate_lm.json").read_text())
    meta["architecture"]["dim"] = 48
    meta["architecture"]["heads"] = 3
    (f / "curate_lm.json").write_text(json.dumps(meta))
    with pytest.raises(StageError, match=r"do not match curate_lm\.json"):
        LMScorer(model_path=str(f), device="cpu").setup(None)  # type: ignore[arg-type]
    f = broken("version")
    meta = json.loads((f / "curate_lm.json").read_text())
    meta["format_version"] = 99
    (f / "curate_lm.json").write_text(json.dumps(meta))
    with pytest.raises(StageError, match="format version 99"):
        LMScorer(model_path=str(f), device="cpu").setup(None)  # type: ignore[arg-type]
    f = broken("garbage")
    (f / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(StageError, match="unreadable weights"):
        LMScorer(model_path=str(f), device="cpu").setup(None)  # type: ignore[arg-type]
    with pytest.raises(StageError, match="fewer than one window"):
        train_proxy_lm(["tiny"], tmp_path / "t", ProxyLMConfig(context=64), TrainSettings(steps=1))
    with pytest.raises(StageError, match="not a multiple of heads"):
        ProxyLMConfig(dim=10, heads=3)


def test_prefetch_keeps_order_propagates_errors_and_stops_early() -> None:
    import threading

    from curate.stages.lm import prefetch

    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("boom in the producer")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(failing()))
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for x in prefetch(endless(), depth=2):
        if x == 5:
            break
    assert len(produced) <= 10
    assert not any(t.name == "curate-prefetch" for t in threading.enumerate())


def test_cli_train_lm_then_score(tmp_path: Path, python_source_texts: list[str]) -> None:
    pq.write_table(pa.table({"text": python_source_texts[:10]}), tmp_path / "t.parquet")
    cmd = [sys.executable, "-m", "curate.cli.app"]
    res = subprocess.run(
        [
            *cmd,
            "train",
            "lm",
            "--data",
            str(tmp_path / "t.parquet"),
            "-o",
            str(tmp_path / "lm"),
            "--steps",
            "20",
            "--dim",
            "16",
            "--layers",
            "1",
            "--heads",
            "2",
            "--context",
            "32",
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "held-out loss" in res.stderr
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == ["curate_lm.json", "model.safetensors"]
    res = subprocess.run(
        [
            *cmd,
            "score",
            "lm",
            "--model",
            str(tmp_path / "lm"),
            str(tmp_path / "t.parquet"),
            str(tmp_path / "s"),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    t = pq.read_table(tmp_path / "s")
    assert t.column("lm_tokens").to_pylist() == [len(x.encode()) - 1 for x in python_source_texts[:10]]
    res = subprocess.run(
        [
            *cmd,
            "train",
            "lm",
            "--data",
            str(tmp_path / "t.parquet"),
            "-o",
            str(tmp_path / "lm2"),
            "--dim",
            "10",
            "--heads",
            "3",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "not a multiple of heads" in res.stderr and "Traceback" not in res.stderr


def test_head_split_is_verified_and_refused_for_soft_capped_logits(tiny_gpt2: Path) -> None:
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma2ForCausalLM

    from curate.stages.lm import split_head

    assert split_head(AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()) is not None
    cfg = Gemma2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=0.5,  # logits = 0.5 * tanh(h W / 0.5): not the head alone
    )
    torch.manual_seed(0)
    assert split_head(Gemma2ForCausalLM(cfg).eval()) is None
