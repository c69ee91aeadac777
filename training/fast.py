"""FAST action tokenizer (Pertsch et al. 2025), as Psi0's stage 1 uses it.

A chunk of actions (T, D), already normalised, becomes tokens so:
  1. DCT-II (orthonormal) over time, separately per dimension -> coefficients (T, D);
  2. multiply by `scale` (100 in Psi0) and round to integers;
  3. shift by the smallest integer seen when fitting, so every value is >= 0, and write the
     (T, D) integers row by row (frequency-major) as one string of characters chr(value);
  4. byte-pair encoding of that string (the `tokenizers` library, vocabulary 2048).
Decoding inverts each step; a token stream that decodes to the wrong length is padded with zero
coefficients or truncated, as the reference does.

Round-trip error: only step 2 loses information (|rounding| <= 0.5 / scale per coefficient, plus
clipping of values outside the fitted range). The DCT is orthonormal, so per dimension the L2
error over the chunk equals the coefficient error: |x - x'|_max <= 0.5 * sqrt(T) / scale for
values inside the fitted range (ROUND_TRIP_BOUND below); test_train_fast checks it.

A fitted tokenizer is a directory: tokenizer.json (the BPE) and fast_config.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CONFIG_FILE = "fast_config.json"
TOKENIZER_FILE = "tokenizer.json"
ACTION_TOKEN = "<|a_{}|>"  # action token i in the VLM vocabulary (Psi0's spelling)
ACTION_START = "<|action_start|>"
ACTION_END = "<|action_end|>"


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n, n): coefficients = M @ signal (scipy.fft.dct(norm="ortho"))."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * t + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def dct(chunk: np.ndarray) -> np.ndarray:
    """(..., T, D) -> DCT-II coefficients over T (orthonormal)."""
    chunk = np.asarray(chunk, dtype=np.float64)
    return np.einsum("kt,...td->...kd", dct_matrix(chunk.shape[-2]), chunk)


def idct(coefficients: np.ndarray) -> np.ndarray:
    """Inverse of dct() (the transpose of an orthonormal matrix)."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    return np.einsum("kt,...kd->...td", dct_matrix(coefficients.shape[-2]), coefficients)


def round_trip_bound(horizon: int, scale: float) -> float:
    """Largest |action - decode(encode(action))| for actions inside the fitted range."""
    return 0.5 * math.sqrt(horizon) / scale


@dataclass(frozen=True)
class FastSpec:
    horizon: int  # T: actions per chunk (1 in Psi0's stage 1)
    action_dim: int  # D: 48 for EgoDex hands
    scale: float  # coefficients * scale are rounded (100 in Psi0)
    min_token: int  # smallest rounded coefficient seen when fitting (the shift)
    max_token: int  # largest one; values outside [min_token, max_token] are clipped
    vocab_size: int  # requested BPE vocabulary

    def __post_init__(self) -> None:
        if self.horizon <= 0 or self.action_dim <= 0:
            raise ValueError(f"FAST chunk must be (T > 0, D > 0), got ({self.horizon}, {self.action_dim})")
        if self.scale <= 0:
            raise ValueError(f"FAST scale must be > 0, got {self.scale}")
        if self.max_token < self.min_token:
            raise ValueError(f"FAST max_token {self.max_token} < min_token {self.min_token}")


class FastTokenizer:
    """encode((T, D) chunk) -> list of token ids in [0, vocab); decode(ids) -> (T, D) chunk."""

    def __init__(self, spec: FastSpec, bpe: object):
        self.spec = spec
        self.bpe = bpe  # tokenizers.Tokenizer

    @property
    def vocab_size(self) -> int:
        """Tokens this tokenizer can emit (may be below spec.vocab_size on small fitting data)."""
        return int(self.bpe.get_vocab_size())

    @property
    def round_trip_bound(self) -> float:
        return round_trip_bound(self.spec.horizon, self.spec.scale)

    def _check_chunk(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim == 1 and self.spec.horizon == 1:
            chunk = chunk[None]
        expected = (self.spec.horizon, self.spec.action_dim)
        if chunk.shape != expected:
            raise ValueError(f"FAST chunk must have shape {expected}, got {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise ValueError("FAST chunk contains non-finite values")
        return chunk

    def _integers(self, chunk: np.ndarray) -> np.ndarray:
        values = np.rint(dct(self._check_chunk(chunk)) * self.spec.scale).astype(np.int64)
        return np.clip(values, self.spec.min_token, self.spec.max_token).reshape(-1) - self.spec.min_token

    def encode(self, chunk: np.ndarray) -> list[int]:
        text = "".join(map(chr, self._integers(chunk)))
        return list(self.bpe.encode(text).ids)

    def decode(self, ids: Sequence[int]) -> np.ndarray:
        """Token ids -> (T, D) float64 actions. Unknown ids are an error naming them."""
        vocab = self.vocab_size
        bad = [int(i) for i in ids if not 0 <= int(i) < vocab]
        if bad:
            raise ValueError(f"FAST token ids outside [0, {vocab}): {bad[:8]}")
        text = "".join(self.bpe.id_to_token(int(i)) for i in ids)
        values = np.fromiter((ord(c) for c in text), dtype=np.int64, count=len(text)) + self.spec.min_token
        size = self.spec.horizon * self.spec.action_dim
        values = np.pad(values, (0, max(0, size - values.size)))[:size]
        coefficients = values.reshape(self.spec.horizon, self.spec.action_dim) / self.spec.scale
        return idct(coefficients)

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.bpe.save(str(directory / TOKENIZER_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.spec), indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path) -> FastTokenizer:
        from tokenizers import Tokenizer

        directory = Path(directory).expanduser()
        for name in (CONFIG_FILE, TOKENIZER_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"FAST tokenizer {directory} is incomplete: no {name}")
        try:
            spec = FastSpec(**json.loads((directory / CONFIG_FILE).read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"bad FAST config {directory / CONFIG_FILE}: {err}") from None
        return cls(spec, Tokenizer.from_file(str(directory / TOKENIZER_FILE)))

    @classmethod
    def fit(cls, chunks: Iterable[np.ndarray], vocab_size: int = 2048, scale: float = 100.0) -> FastTokenizer:
        """Fit the shift and the BPE merges on chunks of one shape (T, D)."""
        from tokenizers import Tokenizer, models, trainers

        integer_rows = []
        shape = None
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float64)
            if chunk.ndim != 2 or (shape is not None and chunk.shape != shape):
                raise ValueError(f"FAST chunks must all be (T, D) of one shape, got {chunk.shape} after {shape}")
            if not np.isfinite(chunk).all():
                raise ValueError("FAST fitting data contain non-finite values")
            shape = chunk.shape
            integer_rows.append(np.rint(dct(chunk) * scale).astype(np.int64).reshape(-1))
        if not integer_rows:
            raise ValueError("no action chunks to fit the FAST tokenizer on")
        integers = np.stack(integer_rows)
        low, high = int(integers.min()), int(integers.max())
        alphabet = high - low + 1
        if alphabet > vocab_size:
            raise ValueError(
                f"FAST vocabulary {vocab_size} is smaller than the range of rounded coefficients ({alphabet}); "
                f"lower the scale ({scale}) or normalise the actions"
            )
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            show_progress=False,
            initial_alphabet=[chr(i) for i in range(alphabet)],
            max_token_length=10000,
        )
        bpe.train_from_iterator(("".join(map(chr, row - low)) for row in integers), trainer=trainer)
        spec = FastSpec(shape[0], shape[1], float(scale), low, high, int(vocab_size))
        return cls(spec, bpe)


def action_token_strings(count: int) -> list[str]:
    """The VLM vocabulary's action tokens for FAST ids 0..count-1."""
    return [ACTION_TOKEN.format(i) for i in range(count)]
