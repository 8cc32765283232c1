"""Sentence embeddings (`ai.embeddings`): what they measure, that they do not depend on what is embedded
with them, the int8 rewrite of the model, and the fall-back to words when the model is missing."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from ai import embeddings
from ai.base import KeywordIn
from ai.embeddings import Embedder, embedder
from ai.local import LocalProvider

needs_model = pytest.mark.skipif(not embedder().available(), reason="the embedding model is not installed")


@needs_model
def test_vectors_are_unit_and_close_for_texts_about_one_thing() -> None:
    vectors = embedder().embed(["rate lock period", "mortgage rates", "sourdough starter recipe"])
    assert vectors.shape == (3, embeddings.DIMENSION)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = vectors @ vectors.T
    assert cosines[0, 1] > cosines[0, 2] + 0.2  # no shared word, one subject


@needs_model
def test_a_text_gets_the_same_vector_whatever_is_embedded_with_it() -> None:
    alone = Embedder().embed(["home gym flooring"])[0]
    among = Embedder().embed(["crate training a puppy", "home gym flooring", "x" * 2000])[1]
    assert np.array_equal(alone, among)
    assert np.array_equal(embedder().embed(["Home  Gym flooring"])[0], alone)  # case and spaces do not count


@needs_model
def test_the_int8_word_table_gives_the_model_s_own_vectors() -> None:
    import onnxruntime as ort

    model = embeddings._model_path().read_bytes()
    rewritten = embeddings._int8_word_embeddings(model)
    assert len(rewritten) < len(model) and rewritten != model
    ids = np.array([[101, 3446, 5843, 2558, 102]], dtype=np.int64)  # [CLS], three word pieces, [SEP]
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    outputs = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
               for m in (model, rewritten)]
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-5
    assert embeddings._int8_word_embeddings(b"") == b""  # not the expected graph: left as it is


def test_without_the_model_clustering_falls_back_to_words(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(embeddings, "MODEL_PACKAGE", "no_such_model_package")
    monkeypatch.setattr(embeddings, "_EMBEDDER", None)
    with caplog.at_level(logging.WARNING, logger="automation.embeddings"):
        assert not embedder().available()
        keywords = [KeywordIn(1, "trail running shoes"), KeywordIn(2, "trail running shoes for women"),
                    KeywordIn(3, "sourdough starter")]
        clusters = asyncio.run(LocalProvider().cluster_keywords(keywords, []))
    assert sorted(sorted(c.keyword_ids) for c in clusters) == [[1, 2], [3]]
    assert "no-such-model-package package is not installed" in caplog.text
    assert "fall back to matching words" in caplog.text
    assert embedder().unavailable_reason is not None
    with pytest.raises(embeddings.EmbeddingsUnavailable):
        embedder().embed(["anything"])


def test_the_model_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embeddings.DISABLE_ENV, "off")
    assert not Embedder().available()
