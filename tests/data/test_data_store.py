"""The token store (memory-mapped, crash-safe), parallel tokenization, and the source-keyed
cache of the data spec: a warm start reads nothing but the store."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from asft.data import DataError, PreferencePair
from asft.data import spec as spec_module
from asft.data.store import StoreBuilder, TokenizedPair, TokenStore, build_in, ids_dtype
from asft.data.tokenize import tokenize_pairs

TEXT = "the quick brown fox jumps over a lazy dog what is twelve plus thirty answer"
WORDS = TEXT.split()


def _pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(1, k)))

    return [PreferencePair([{"role": "user", "content": text(12)}],
                           [{"role": "assistant", "content": text(6)}],
                           [{"role": "assistant", "content": text(6) + "!"}], f"gen:{i + 1}")
            for i in range(n)]


def _examples(n: int) -> list[TokenizedPair]:
    rng = random.Random(n)
    return [TokenizedPair([rng.randrange(900) for _ in range(rng.randint(1, 7))],
                          [rng.randrange(900) for _ in range(rng.randint(1, 4))],
                          [rng.randrange(900) for _ in range(rng.randint(1, 4))]) for _ in range(n)]


@pytest.fixture(scope="module")
def tok():
    from asft.model.tiny import build_tokenizer

    return build_tokenizer()


def _build(dest: Path, examples: list[TokenizedPair], chunk: int = 3) -> TokenStore:
    with build_in(dest, ids_dtype(1000)) as builder:
        for lo in range(0, len(examples), chunk):
            builder.append(examples[lo:lo + chunk], range(10 * lo, 10 * lo + len(examples[lo:lo + chunk])))
        builder.seal({"note": "x"})
    store = TokenStore.open(dest)
    assert store is not None
    return store


def test_a_store_maps_back_exactly_what_was_written(tmp_path):
    examples = _examples(11)
    store = _build(tmp_path / "s", examples)
    assert isinstance(store.ids, np.memmap) and store.ids.dtype == np.uint16
    assert list(store) == examples and store == examples and len(store) == 11
    assert store[-1] == examples[-1] and store.header["note"] == "x"
    assert store.indices.tolist()[:4] == [0, 1, 2, 30]
    assert store.lengths.sum() == store.header["tokens"] == len(store.ids)
    view = store.take([5, 2, 9])
    assert list(view) == [examples[5], examples[2], examples[9]]
    assert list(view.take([2, 0])) == [examples[9], examples[5]]
    # prompt, chosen, rejected, gold (none here)
    assert view.lengths.tolist() == [
        [len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids), 0]
        for e in (examples[5], examples[2], examples[9])]
    # the digest follows the ids, indices and rows, not the chunking or the storage
    memory = StoreBuilder(ids_dtype(1000))
    memory.append(examples, store.indices.tolist())
    in_memory = memory.finish({})
    assert in_memory == examples and in_memory.digest() == store.digest()
    assert view.digest() != store.digest() != store.take(range(11)).digest()
    with pytest.raises(IndexError):
        store[11]


def test_ids_that_do_not_fit_are_refused_and_wide_vocabularies_get_int32():
    assert ids_dtype(49152) == np.uint16 and ids_dtype(128_256) == np.int32
    with pytest.raises(ValueError, match="does not fit"):
        StoreBuilder(np.dtype(np.uint16)).append([TokenizedPair([70000], [1], [2])], [0])


@pytest.mark.parametrize("damage", ["short ids", "long lengths", "bad header", "other version",
                                    "bad starts", "missing file"])
def test_a_damaged_store_is_never_opened(tmp_path, damage):
    dest = tmp_path / "s"
    _build(dest, _examples(9))
    if damage == "short ids":
        (dest / "ids.bin").write_bytes((dest / "ids.bin").read_bytes()[:-2])
    elif damage == "long lengths":
        with open(dest / "lengths.bin", "ab") as fh:
            fh.write(b"\0" * 12)
    elif damage == "bad header":
        (dest / "header.json").write_text('{"version": 1')
    elif damage == "other version":
        header = json.loads((dest / "header.json").read_text())
        (dest / "header.json").write_text(json.dumps({**header, "version": 99}))
    elif damage == "bad starts":
        starts = np.fromfile(dest / "starts.bin", dtype=np.int64)
        starts[3] += 1
        starts.tofile(dest / "starts.bin")
    else:
        (dest / "indices.bin").unlink()
    assert TokenStore.open(dest) is None


def test_a_failed_build_leaves_nothing(tmp_path):
    dest = tmp_path / "s"
    with pytest.raises(RuntimeError, match="boom"), build_in(dest, ids_dtype(1000)) as builder:
        builder.append(_examples(4), range(4))
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="not sealed"), build_in(dest, ids_dtype(1000)) as builder:
        builder.append(_examples(4), range(4))
    assert list(tmp_path.iterdir()) == []


def test_parallel_tokenization_gives_the_one_process_store(tok, tmp_path):
    pairs = _pairs(1300)  # three chunks of 512
    one = tokenize_pairs(pairs, tok, 40, 24, cache_dir=tmp_path / "a", num_proc=1)
    two = tokenize_pairs(pairs, tok, 40, 24, cache_dir=tmp_path / "b", num_proc=2)
    assert one.report.dropped and one.report.kept < len(pairs)  # drops in every worker's share
    assert two.examples == one.examples and two.indices == one.indices
    assert two.examples.digest() == one.examples.digest()
    assert two.report.to_dict() | {"seconds": 0, "cache_path": ""} == \
        one.report.to_dict() | {"seconds": 0, "cache_path": ""}
    assert one.report.tokens == int(one.examples.lengths.sum()) > 0
    assert one.report.store_bytes == one.examples.nbytes > 0


@dataclass
class Spec:
    """A data section (the fields :class:`asft.data.spec.Spec` reads)."""

    source: str
    format: str = "auto"
    columns: dict = field(default_factory=dict)
    split: str | None = None
    system: str | None = None
    on_bad_record: str = "error"
    empty_response: str = "keep"
    labels: dict = field(default_factory=dict)
    binarize: str = "random"
    max_length: int = 64
    max_prompt_length: int = 32
    overflow: str = "drop"
    boundary: str = "shift"
    limit: int | None = None
    streaming: bool = False
    num_proc: int | None = 1


def _jsonl(path: Path, pairs: list[PreferencePair], bad_line: int | None = None) -> Path:
    with path.open("w") as f:
        for i, p in enumerate(pairs, 1):
            if i == bad_line:
                f.write('{"prompt": "broken\n')
                continue
            f.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")
    return path


def test_a_warm_start_reads_only_the_store(tok, tmp_path, monkeypatch):
    data = _jsonl(tmp_path / "pairs.jsonl", _pairs(600))
    cache = tmp_path / "cache"
    cold = spec_module.prepare(Spec(str(data)), tok, cache_dir=cache)
    assert cold.tokenized.report.cache == "miss" and cold.load.kept == 600

    def no_reading(*args, **kwargs):
        raise AssertionError("the source was read on a warm start")

    monkeypatch.setattr(spec_module, "PairStream", no_reading)
    monkeypatch.setattr(spec_module, "read", no_reading)
    warm = spec_module.prepare(Spec(str(data)), tok, cache_dir=cache)
    assert warm.tokenized.report.cache == "hit" and isinstance(warm.tokenized.examples.ids, np.memmap)
    assert warm.tokenized.examples == cold.tokenized.examples
    assert warm.load.to_dict() == cold.load.to_dict()
    assert warm.report()["tokenize"] | {"cache": "", "seconds": 0} == \
        cold.report()["tokenize"] | {"cache": "", "seconds": 0}
    monkeypatch.undo()
    # an option that changes the pairs, or new bytes in the file, is another store
    assert spec_module.prepare(Spec(str(data), limit=100), tok,
                               cache_dir=cache).tokenized.report.cache == "miss"
    _jsonl(data, _pairs(600, seed=1))
    again = spec_module.prepare(Spec(str(data)), tok, cache_dir=cache)
    assert again.tokenized.report.cache == "miss" and again.tokenized.examples != cold.tokenized.examples
    # the streamed store equals tokenizing the pairs read whole
    whole = tokenize_pairs(_pairs(600, seed=1), tok, 64, 32)
    assert again.tokenized.examples == whole.examples and again.tokenized.indices == whole.indices


def test_a_bad_record_mid_stream_names_its_line_and_leaves_no_store(tok, tmp_path):
    data = _jsonl(tmp_path / "pairs.jsonl", _pairs(1200), bad_line=900)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"line 900"):
        spec_module.prepare(Spec(str(data), num_proc=2), tok, cache_dir=cache)
    assert not [p for p in cache.glob("*store*")]
    skipped = spec_module.prepare(Spec(str(data), on_bad_record="skip", num_proc=2), tok,
                                  cache_dir=cache)
    assert skipped.load.skipped == {"malformed": 1} and skipped.load.kept == 1199
    assert skipped.tokenized.report.pairs == 1199


def test_rated_data_keeps_one_store_per_seed_of_its_draw(tok, tmp_path):
    records = [{"instruction": f"question {i}", "completions": [
        {"response": f"answer {j} to {i}", "overall_score": j} for j in range(4)]} for i in range(30)]
    data = tmp_path / "rated.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cache = tmp_path / "cache"
    first = spec_module.prepare(Spec(str(data)), tok, seed=0, cache_dir=cache)
    assert first.load.format == "rated"
    assert spec_module.prepare(Spec(str(data)), tok, seed=0,
                               cache_dir=cache).tokenized.report.cache == "hit"
    other = spec_module.prepare(Spec(str(data)), tok, seed=1, cache_dir=cache)
    assert other.tokenized.report.cache == "miss"
    assert other.tokenized.examples != first.tokenized.examples
