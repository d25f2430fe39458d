"""The local cross-encoder slot (RAG_RERANK_MODEL_PATH): a tiny ONNX model built here, loaded
through FastEmbed's TextCrossEncoder like a client's copied-in weights, sha256-checked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import rerank
from {{ cookiecutter.package_name }}.domain import Hit
from {{ cookiecutter.package_name }}.errors import ConfigurationError, ModelIntegrityError
from {{ cookiecutter.package_name }}.refusal import RefusalPolicy, build_refusal
from {{ cookiecutter.package_name }}.settings import Settings

VOCAB = ["[PAD]", "[UNK]", "[SEP]", "espresso", "machine", "descaled", "friday", "passwords"]
ESPRESSO = VOCAB.index("espresso")


def build_model(folder: Path) -> Path:
    """A cross-encoder whose logit is 2 * (how often "espresso" occurs in the pair) - 1: real
    ONNX with the inputs FastEmbed feeds (input_ids, attention_mask, token_type_ids)."""
    import onnx
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["target"],
            value=helper.make_tensor("t", TensorProto.INT64, [], [ESPRESSO]),
        ),
        helper.make_node("Equal", ["input_ids", "target"], ["is_target"]),
        helper.make_node("Cast", ["is_target"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node(
            "Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("ReduceSum", ["as_float", "axes"], ["count"], keepdims=1),
        helper.make_node(
            "Constant", [], ["two"], value=helper.make_tensor("w", TensorProto.FLOAT, [], [2.0])
        ),
        helper.make_node(
            "Constant", [], ["one"], value=helper.make_tensor("b", TensorProto.FLOAT, [], [1.0])
        ),
        helper.make_node("Mul", ["count", "two"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "one"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny-cross-encoder", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))

    tokenizer = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(VOCAB)}, unk_token="[UNK]")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"model_max_length": 64, "pad_token": "[PAD]", "unk_token": "[UNK]"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": "[PAD]", "unk_token": "[UNK]"}), encoding="utf-8"
    )
    return folder


HITS = [
    Hit("p", "p.md", "passwords are long", 0.9, {}, 0.5, 1, 1, 0.0),
    Hit("e", "e.md", "the espresso machine is descaled friday", 0.5, {}, 0.4, 2, 2, 0.0),
    Hit("x", "x.md", "friday", 0.4, {}, 0.3, 3, None, 0.0),
]


def test_a_copied_in_cross_encoder_loads_offline_and_reorders_by_its_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = build_model(tmp_path / "ce")
    settings = Settings(
        _env_file=None,
        rerank_model_path=folder,
        rerank_model_sha256=rerank.file_sha256(folder / "model.onnx"),
    )
    reranker = rerank.build_reranker(settings)
    assert isinstance(reranker, rerank.LocalCrossEncoder)
    # The model reads query and passage together: "espresso" once (in the query) is logit
    # 2*1-1 = 1, twice is 3; the scores are their sigmoids.
    scores = reranker.scores("espresso", ["passwords", "espresso machine"])
    assert scores == pytest.approx([1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-3))], rel=1e-5)
    reranked = reranker.rerank("when is the espresso machine descaled", HITS, top_k=2)
    assert [h.chunk_id for h in reranked] == ["e", "p"]
    assert reranked[0].rerank_score is not None
    assert reranked[0].rerank_score > reranked[1].rerank_score  # type: ignore[operator]
    assert reranker.span_attributes()["rerank.stage"] == "cross_encoder"


def test_a_cross_encoder_whose_hash_differs_is_refused(tmp_path: Path) -> None:
    folder = build_model(tmp_path / "ce")
    with pytest.raises(ModelIntegrityError, match="Refusing to load it"):
        rerank.LocalCrossEncoder(folder, "0" * 64)
    with pytest.raises(ConfigurationError, match="RAG_RERANK_MODEL_SHA256 is not set"):
        rerank.LocalCrossEncoder(folder, None)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ConfigurationError, match=r"lacks tokenizer\.json"):
        rerank.LocalCrossEncoder(folder, "0" * 64)


def test_with_a_rerank_floor_the_cross_encoder_score_decides_refusal(tmp_path: Path) -> None:
    folder = build_model(tmp_path / "ce")
    settings = Settings(
        _env_file=None,
        rerank_model_path=folder,
        rerank_model_sha256=rerank.file_sha256(folder / "model.onnx"),
        refusal_min_rerank=0.8,  # espresso twice: 0.95; once: 0.73
    )
    refusal = build_refusal(settings)
    assert isinstance(refusal, RefusalPolicy)
    reranker = rerank.build_reranker(settings)
    assert reranker is not None
    assert refusal.decide(reranker.rerank("espresso", HITS, 3)).refuse is False
    assert refusal.decide(reranker.rerank("passwords", HITS, 3)).refuse is True
