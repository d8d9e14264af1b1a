"""LESS influence (curate.influence, `curate score influence`) on tiny proxy LMs built here:
batched per-example gradients equal the one-at-a-time loop, the projection keeps inner products
(Johnson-Lindenstrauss) and is the same for every feature, checkpoints carry Adam's moments, and
the scores are the means and max the spec defines, derived from the rows' own per-example values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from curate.influence import (  # noqa: E402
    Projection,
    adam_features,
    checkpoints_of,
    fwht_,
)
from curate.per_example import per_example_gradients_loop, tap_gradients, vmap_gradients  # noqa: E402
from curate.proxy_lm import ProxyLMConfig, TrainSettings, build_model, checkpoint_steps, train_proxy_lm  # noqa: E402
from tests.cli import run_main  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "corpus"


def test_both_batched_gradients_equal_the_loop() -> None:
    torch.manual_seed(0)
    model = build_model(ProxyLMConfig(context=24, dim=16, layers=2, heads=2)).eval()
    ids = torch.randint(0, 256, (6, 25))
    mask = torch.ones_like(ids)
    mask[2, 10:] = 0  # a shorter document, padded
    loop = per_example_gradients_loop(model, ids, mask)
    for batched in (tap_gradients(model, ids, mask), vmap_gradients(model, ids, mask)):
        assert batched.shape == loop.shape and float((batched - loop).abs().max()) < 1e-5


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 3000), seed=st.integers(0, 10**6))
def test_the_projection_keeps_inner_products(size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(4, size)).astype(np.float32))
    proj = Projection(size, 1024, seed=7)
    px = proj(x)
    exact, approx = (x @ x.T).double(), (px @ px.T).double()
    norms = torch.linalg.vector_norm(x.double(), dim=1)
    # JL: the error of <Px, Py> is about |x||y|/sqrt(d); 6 standard deviations cannot flake.
    assert float(((approx - exact).abs() / (norms[:, None] * norms[None, :])).max()) < 6 / 1024**0.5
    again = Projection(size, 1024, seed=7)(x)
    assert torch.equal(px, again)  # the same seed is the same projection, for every feature


@settings(max_examples=20, deadline=None)
@given(log_n=st.integers(0, 9), rows=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_the_fast_transform_is_the_hadamard_matrix(log_n: int, rows: int, seed: int) -> None:
    n = 1 << log_n  # odd and even powers: the radix-4 passes and the radix-2 tail
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(rows, n)).astype(np.float32))
    signs = [[(-1) ** bin(i & j).count("1") for j in range(n)] for i in range(n)]
    dense = x.double() @ torch.tensor(signs, dtype=torch.float64).T
    y = x.clone()
    fwht_(y)
    assert float((y.double() - dense).abs().max()) < 1e-4 * (1 + float(dense.abs().max()))


def test_adam_features_follow_the_formula() -> None:
    g, m, v = (
        torch.tensor([0.5, -1.0, 2.0]),
        torch.tensor([0.1, 0.0, -0.2]),
        torch.tensor([0.01, 0.0, 0.04]),
    )
    got = adam_features(g, m, v, (0.9, 0.999), 1e-8)
    m2, v2 = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    assert torch.allclose(got, m2 / torch.sqrt(v2 + 1e-8))


def warm_model(folder: Path, checkpoints: int = 3) -> Path:
    texts = pq.read_table(GOLDEN / "target.parquet").column("text").to_pylist()
    train_proxy_lm(
        texts,
        folder,
        ProxyLMConfig(context=32, dim=16, layers=1, heads=2),
        TrainSettings(steps=12, batch_size=2, warmup=2, device="cpu", threads=1, checkpoints=checkpoints),
    )
    return folder


def test_checkpoints_hold_weights_moments_and_mean_learning_rates(tmp_path: Path) -> None:
    warm = warm_model(tmp_path / "warm")
    found = checkpoints_of(warm)
    assert [c.step for c in found] == checkpoint_steps(12, 3) == [3, 7, 11]
    assert all(c.mean_lr > 0 for c in found)
    from safetensors.torch import load_file

    moments = load_file(str(found[-1].folder / "adam.safetensors"))
    assert any(k.startswith("m.") for k in moments) and any(
        float(t.abs().sum()) > 0 for t in moments.values()
    )


def test_score_influence_then_bids(tmp_path: Path) -> None:
    warm = warm_model(tmp_path / "warm")
    pool = pq.read_table(GOLDEN / "pool")
    domain = pa.compute.equal(pool.column("domain"), "python_code")
    pq.write_table(pool.filter(domain).slice(0, 4), tmp_path / "code.parquet")
    pq.write_table(pool.filter(pa.compute.invert(domain)).slice(0, 3), tmp_path / "docs.parquet")
    argv = [
        "score", "influence", str(GOLDEN / "pool"), str(tmp_path / "scored"), "--model", str(warm),
        "--task", f"code={tmp_path / 'code.parquet'}", "--task", f"docs={tmp_path / 'docs.parquet'}",
        "--dim", "128", "--workers", "1", "--no-progress",
    ]  # fmt: skip
    assert run_main(*argv) == 0
    out = pq.read_table(tmp_path / "scored")
    tasks = json.loads(out.schema.metadata[b"curate:influence_tasks"])
    n_code = sum(1 for t in pq.read_table(tmp_path / "code.parquet").column("text").to_pylist() if t)
    assert tasks.count("code") == n_code and tasks[0] == "code"
    rows = out.to_pylist()
    empty = [r for r in rows if not r["text"] or len(r["text"].encode()) < 2]
    assert empty and all(r["influence"] is None for r in empty)
    of = np.asarray(tasks)
    for r in rows:
        if r["influence"] is None:
            continue
        a = np.asarray(r["influence_by_example"])
        assert np.all(np.abs(a) <= 1 + 1e-5)  # a weighted mean of cosines, weights summing to 1
        means = {t: a[of == t].mean() for t in ("code", "docs")}
        assert abs(r["influence_code"] - means["code"]) < 1e-5
        assert abs(r["influence"] - max(means.values())) < 1e-5
    assert (
        run_main(
            "bids", str(tmp_path / "scored"), str(tmp_path / "sel"), "--budget", "docs:10", "--no-progress"
        )
        == 0
    )
    assert pq.read_table(tmp_path / "sel").num_rows == 10


def test_influence_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warm = warm_model(tmp_path / "warm", checkpoints=0)
    target = str(GOLDEN / "target.parquet")
    base = ["score", "influence", str(GOLDEN / "pool"), "--model", str(warm), "--dim", "16", "--no-progress"]
    assert run_main(*base, str(tmp_path / "o1"), "--task", f"t={target}") == 1
    assert "no warm-up checkpoints" in capsys.readouterr().err
    assert run_main(*base, str(tmp_path / "o2"), "--task", f"t={target}", "--task", f"t={target}") == 1
    assert "two tasks are named 't'" in capsys.readouterr().err
    assert run_main(*base, str(tmp_path / "o3"), "--task", target) == 1
    assert "NAME=PATH" in capsys.readouterr().err


def test_kept_features_score_new_tasks_without_backward_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import curate.per_example as influence

    warm = warm_model(tmp_path / "warm")
    target = GOLDEN / "target.parquet"
    pq.write_table(pq.read_table(target).slice(0, 3), tmp_path / "t3.parquet")
    common = ["--model", str(warm), "--dim", "64", "--workers", "1", "--no-progress"]
    first = ["score", "influence", str(GOLDEN / "pool"), str(tmp_path / "kept"), "--keep-features"]
    assert run_main(*first, "--task", f"docs={target}", *common) == 0
    kept = pq.read_table(tmp_path / "kept")
    assert kept.schema.field("influence_features").type.list_size == 3 * 64
    calls: list[int] = []
    real = influence.per_example_gradients

    def counted(model, ids, mask, params=None):  # type: ignore[no-untyped-def]
        calls.append(int(ids.shape[0]))
        return real(model, ids, mask, params)

    monkeypatch.setattr(influence, "per_example_gradients", counted)
    again = ["score", "influence", str(tmp_path / "kept"), str(tmp_path / "again")]
    assert run_main(*again, "--task", f"few={tmp_path / 't3.parquet'}", *common) == 0
    assert sum(calls) == 3 * 3  # only the 3 task examples, at each of the 3 checkpoints
    fresh = ["score", "influence", str(GOLDEN / "pool"), str(tmp_path / "fresh")]
    assert run_main(*fresh, "--task", f"few={tmp_path / 't3.parquet'}", *common) == 0
    a = np.asarray(pq.read_table(tmp_path / "again").column("influence").to_pylist(), dtype=float)
    b = np.asarray(pq.read_table(tmp_path / "fresh").column("influence").to_pylist(), dtype=float)
    assert np.allclose(a, b, atol=2e-3, equal_nan=True)  # float16 features: three decimals


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained on the golden target."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("llama")
    texts = pq.read_table(GOLDEN / "target.parquet").column("text").to_pylist()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [t for t in texts if t], vocab_size=300, min_frequency=2, special_tokens=["<eos>"]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>", pad_token="<eos>")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_lora_warm_up_and_influence_over_the_adapters(tiny_llama: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    target = str(GOLDEN / "target.parquet")
    warm = tmp_path / "warm"
    argv = [
        "train",
        "lora",
        "--model",
        str(tiny_llama),
        "--data",
        target,
        "-o",
        str(warm),
        "--checkpoints",
        "2",
    ]
    assert (
        run_main(
            *argv,
            "--epochs",
            "2",
            "--r",
            "4",
            "--alpha",
            "16",
            "--accumulation",
            "8",
            "--max-length",
            "48",
            "--lr",
            "1e-3",
            "--no-progress",
        )
        == 0
    )
    found = checkpoints_of(warm)
    assert len(found) == 2 and all(c.meta["kind"] == "lora" and c.mean_lr > 0 for c in found)
    from safetensors.torch import load_file

    adapters = load_file(str(found[0].folder / "adapter.safetensors"))
    assert adapters and all("lora_" in k for k in adapters)  # only the adapters, never the base
    assert set(load_file(str(found[0].folder / "adam.safetensors"))) == {
        f"{p}.{k}" for k in adapters for p in "mv"
    }
    out = tmp_path / "scored"
    score = [
        "score",
        "influence",
        str(GOLDEN / "pool"),
        str(out),
        "--model",
        str(warm),
        "--task",
        f"docs={target}",
    ]
    assert run_main(*score, "--dim", "64", "--workers", "1", "--no-progress") == 0
    values = [v for v in pq.read_table(out).column("influence").to_pylist() if v is not None]
    assert len(values) > 100 and all(-1 - 1e-5 <= v <= 1 + 1e-5 for v in values) and len(set(values)) > 10


def test_lora_targets_that_match_nothing_are_named(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("peft")
    argv = [
        "train",
        "lora",
        "--model",
        str(tiny_llama),
        "--data",
        str(GOLDEN / "target.parquet"),
        "-o",
        str(tmp_path / "w"),
    ]
    assert run_main(*argv, "--target-modules", "qkv_nope", "--no-progress") == 1
    err = capsys.readouterr().err
    assert "qkv_nope" in err and "q_proj" in err


def test_rows_whose_gradients_are_not_finite_get_nulls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import curate.per_example as influence

    warm = warm_model(tmp_path / "warm")
    real = influence.per_example_gradients
    examples = [t for t in pq.read_table(GOLDEN / "target.parquet").column("text").to_pylist() if t]
    task_calls = 3 * -(-len(examples) // 16)  # every checkpoint's task examples come first
    calls = [0]

    def poisoned(model, ids, mask, params=None):  # type: ignore[no-untyped-def]
        g = real(model, ids, mask, params)
        calls[0] += 1
        if calls[0] > task_calls:  # a candidate batch: its first row overflows
            g[0] = float("inf")
        return g

    monkeypatch.setattr(influence, "per_example_gradients", poisoned)
    argv = ["score", "influence", str(GOLDEN / "pool"), str(tmp_path / "out"), "--model", str(warm)]
    assert (
        run_main(
            *argv,
            "--task",
            f"t={GOLDEN / 'target.parquet'}",
            "--dim",
            "32",
            "--workers",
            "1",
            "--no-progress",
        )
        == 0
    )
    out = pq.read_table(tmp_path / "out")
    nulls = out.column("influence").null_count
    empty = sum(1 for t in out.column("text").to_pylist() if not t or len(t.encode()) < 2)
    poisoned_rows = -(-(out.num_rows - empty) // 16)  # one per candidate batch of a shard, at least
    assert empty < nulls < out.num_rows and nulls >= empty + min(poisoned_rows, 4)
    assert out.column("influence_by_example").null_count == nulls
