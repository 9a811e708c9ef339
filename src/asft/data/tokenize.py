"""``tokenize_pairs``: preference pairs to token ids with an exact prompt/response boundary.

The guarantee: for every kept pair, ``prompt_ids + chosen_ids`` is exactly the tokenizer's
tokenization of the full chosen conversation text (chat template applied, see
:mod:`asft.data.render`), cut after the EOS that ends the response, and likewise
``prompt_ids + rejected_ids`` for the rejected one, with ONE ``prompt_ids`` shared by both
(the collator computes the prompt once per pair). Each response ends with the EOS id.

A pair's gold response (TPO) is tokenized as a third full text under the same rules and the
same ``prompt_ids``: ``prompt_ids + gold_ids`` is its tokenization (``gold_ids == []`` when
the pair has none). The empty side of an unpaired example (KTO) gets ``[]``: its text is a
copy of the other side's (:mod:`asft.data.render`), so the boundary is that side's own.

How the boundary is found: the full texts are tokenized whole (never prompt and response
separately), and the character offsets of the tokens locate the end of the prompt text. The
boundary is *clean* when a token ends exactly there in every sequence and the prompt tokens of
all are the same. It is a **boundary mismatch** otherwise: a token straddles the prompt end
(e.g. a response that starts with whitespace merges with the template's newline), or the two
prompt tokenizations differ. Policy ``boundary="shift"`` (default) moves the boundary left to
the longest run of leading tokens that all sequences share and that lies wholly in the prompt,
so the guarantee above still holds and the few prompt characters that moved are scored as part
of the response; ``boundary="drop"`` drops such pairs. Either way they are counted.

Length limits, in order: a prompt longer than ``max_prompt_length`` keeps its last
``max_prompt_length`` tokens (the end of the conversation matters most); then a pair with
``len(prompt) + max(len(chosen), len(rejected), len(gold)) > max_length`` is dropped
(``overflow="drop"``, default: a cut response has no EOS, and its likelihood is not the
response's) or has all its responses cut to fit (``overflow="truncate"``, TRL's behaviour). A
pair whose prompt or a response would be empty is dropped (a pair with no response at all
too); only an unpaired example's empty side is kept, as ``[]``. Every drop is counted by
reason.

Speed: templates are compiled once; the head that a pair's two texts share (up to the last
special token before the response, e.g. ``<|im_start|>``) is encoded once, where
:mod:`asft.data.segments` shows that cannot change a token; all texts of a chunk are encoded in
one batched call of the Rust tokenizer; chunks of 512 pairs are tokenized by ``num_proc``
processes side by side (:mod:`asft.data.parallel`) and merged in order, so the result is the
one-process result. Kept pairs go straight into a token store (:mod:`asft.data.store`: flat
arrays, memory-mapped), built in the on-disk cache (:mod:`asft.data.cache`) when there is one.
A cache that cannot be written (full disk, read-only folder) costs the cache, not the run: the
store is built in memory and ``report.cache`` says ``"unwritable"``.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

from asft.data import cache
from asft.data.parallel import map_chunks
from asft.data.records import PreferencePair
from asft.data.render import ChatRenderer, RenderedPair, TemplateError
from asft.data.segments import SpecialCut
from asft.data.store import StoreBuilder, TokenizedPair, TokenStore, build_in, ids_dtype
from asft.progress import progress_bar

OVERFLOW_POLICIES = ("drop", "truncate")
BOUNDARY_POLICIES = ("shift", "drop")
DROP_REASONS = ("template_error", "boundary_mismatch", "too_long", "empty_prompt",
                "empty_response")
_CHUNK = 512
_MAX_EXAMPLES = 10


def _stats(values: Sequence[int]) -> dict[str, float]:
    import numpy as np

    if len(values) == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    arr = np.asarray(values)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"mean": float(arr.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(arr.max())}


@dataclass
class TokenizeReport:
    """What :func:`tokenize_pairs` did.

    Attributes:
        pairs: pairs given.
        kept: examples returned.
        dropped: pairs dropped per reason (:data:`DROP_REASONS`).
        boundary_mismatches: pairs whose prompt boundary was not clean (see module docstring);
            kept (boundary shifted) or dropped per the policy.
        template_fallbacks: pairs whose prompt end was found only by the common-prefix
            fallback (the template renders the prompt differently inside the conversation).
        prompts_truncated: prompts cut to ``max_prompt_length`` (kept end).
        responses_truncated: pairs whose responses were cut (``overflow="truncate"`` only).
        chat_template: the tokenizer's chat template was used (else the plain transcript).
        settings: max_length, max_prompt_length, overflow, boundary.
        cache: ``"off"``, ``"hit"``, ``"miss"`` (computed and stored) or ``"unwritable"``
            (computed, could not be stored); cache_path: the token store's folder.
        seconds: wall time of the call.
        examples: the first few drops and mismatches, ``"<origin>: <reason>[: detail]"``.
        prompt_lengths, chosen_lengths, rejected_lengths, gold_lengths: token counts of the
            kept examples (0 for an unpaired example's empty side, and for no gold).
        overlong: ``len(prompt) + len(longest response)`` of each pair dropped as ``too_long``
            (what ``max_length`` would have to be to keep it).
        tokens: token ids kept (each pair's prompt once, its responses).
        store_bytes: bytes of the token store's arrays (:mod:`asft.data.store`).
    """

    pairs: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    boundary_mismatches: int = 0
    template_fallbacks: int = 0
    prompts_truncated: int = 0
    responses_truncated: int = 0
    chat_template: bool = True
    settings: dict = field(default_factory=dict)
    cache: str = "off"
    cache_path: str | None = None
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)
    prompt_lengths: list[int] = field(default_factory=list, repr=False)
    chosen_lengths: list[int] = field(default_factory=list, repr=False)
    rejected_lengths: list[int] = field(default_factory=list, repr=False)
    gold_lengths: list[int] = field(default_factory=list, repr=False)
    overlong: list[int] = field(default_factory=list, repr=False)
    tokens: int = 0
    store_bytes: int = 0

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def length_stats(self) -> dict[str, dict[str, float]]:
        """mean / p50 / p90 / p99 / max tokens of prompt, chosen, rejected and (when any pair
        has one) gold, over the kept pairs that have that response (an unpaired example's
        empty side, length 0, is no response)."""
        import numpy as np

        stats = {"prompt": _stats(self.prompt_lengths)}
        for name, lengths in (("chosen", self.chosen_lengths),
                              ("rejected", self.rejected_lengths), ("gold", self.gold_lengths)):
            arr = np.asarray(lengths, dtype=np.int64)
            present = arr[arr > 0]
            if len(present) or name != "gold":
                stats[name] = _stats(present)
        return stats

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "kept": self.kept, "dropped": dict(self.dropped),
                "boundary_mismatches": self.boundary_mismatches,
                "template_fallbacks": self.template_fallbacks,
                "prompts_truncated": self.prompts_truncated,
                "responses_truncated": self.responses_truncated,
                "chat_template": self.chat_template, "settings": dict(self.settings),
                "cache": self.cache, "cache_path": self.cache_path,
                "seconds": round(self.seconds, 4), "examples": list(self.examples),
                "tokens": self.tokens, "store_bytes": self.store_bytes,
                "lengths": self.length_stats()}


@dataclass
class TokenizeResult:
    """The kept pairs in input order, as a :class:`asft.data.store.TokenStore`, and the report."""

    examples: TokenStore
    report: TokenizeReport

    @property
    def indices(self) -> list[int]:
        """``indices[i]``: the position in the input pairs of ``examples[i]`` (dropped pairs
        leave gaps); built on each access from the store."""
        return self.examples.indices.tolist()


class _Encoder:
    """Batched encoding without special tokens; ``lead`` holds the leading special tokens
    (BOS) that the plain transcript gets, since no template writes them there."""

    def __init__(self, tokenizer, add_special_tokens: bool):
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.lead: list[int] = []
        if add_special_tokens:
            # Leading specials (BOS) the tokenizer adds; trailing ones are replaced by our EOS.
            with_sp = tokenizer("a", add_special_tokens=True)["input_ids"]
            without = tokenizer("a", add_special_tokens=False)["input_ids"]
            for i in range(len(with_sp) - len(without) + 1):
                if with_sp[i:i + len(without)] == without:
                    self.lead = list(with_sp[:i])
                    break

    def encode(self, texts: list[str]) -> list[tuple[list[int], object | None]]:
        """(ids, tokenizers ``Encoding`` or None without a Rust backend) per text."""
        if self.backend is None:
            ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            return [(list(x), None) for x in ids]
        backend = self.backend
        trunc, pad = backend.truncation, backend.padding
        if trunc is not None:
            backend.no_truncation()
        if pad is not None:
            backend.no_padding()
        try:
            encodings = backend.encode_batch(texts, add_special_tokens=False)
        finally:
            if trunc is not None:
                backend.enable_truncation(**trunc)
            if pad is not None:
                backend.enable_padding(**pad)
        return [(e.ids, e) for e in encodings]


def _split(offsets: list[tuple[int, int]], end: int) -> tuple[int, bool]:
    """(tokens wholly inside ``[0, end)``, whether a token boundary falls exactly at ``end``)."""
    k = bisect_right(offsets, end, key=itemgetter(1))
    clean = (offsets[k - 1][1] == end if k else end == 0) and (
        k == len(offsets) or offsets[k][0] >= end)
    return k, clean


def _split_encoding(enc, end: int) -> tuple[int, bool]:
    """:func:`_split` from a tokenizers ``Encoding``, reading only the offsets near ``end``
    (materializing every offset costs more than the rest of the bookkeeping)."""
    t = enc.char_to_token(end - 1) if end > 0 else None
    if t is None:
        return _split(enc.offsets, end)
    n = len(enc)
    # Several tokens can share one character (byte tokens of a multi-byte character).
    while t + 1 < n and enc.token_to_chars(t + 1)[1] <= end:
        t += 1
    if enc.token_to_chars(t)[1] > end:
        return _split(enc.offsets, end)
    clean = enc.token_to_chars(t)[1] == end and (t + 1 == n or enc.token_to_chars(t + 1)[0] >= end)
    return t + 1, clean


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Plan:
    """How one rendered pair is encoded: ``cut`` leading characters shared by both texts are
    encoded once (0: none), and that head's encoding must end with token ``cut_id``."""

    index: int
    rendered: RenderedPair
    cut: int = 0
    cut_id: int = -1


@dataclass
class _Chunk:
    """What tokenizing one chunk of pairs gave; :meth:`_Total.add` merges chunks in order."""

    examples: list[TokenizedPair] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    boundary_mismatches: int = 0
    template_fallbacks: int = 0
    prompts_truncated: int = 0
    responses_truncated: int = 0
    notes: list[str] = field(default_factory=list)  # "<origin>: <reason>[: detail]"
    overlong: list[int] = field(default_factory=list)
    pairs: int = 0


_COUNTS = ("boundary_mismatches", "template_fallbacks", "prompts_truncated",
           "responses_truncated")


class _Run:
    """Tokenizes chunks of pairs with fixed settings (one per process: see
    :mod:`asft.data.parallel`); each call returns a :class:`_Chunk`."""

    def __init__(self, tokenizer, renderer: ChatRenderer, max_length, max_prompt_length,
                 overflow, boundary):
        self.renderer = renderer
        self.encoder = _Encoder(tokenizer, renderer.add_special_tokens)
        self.cutter = None
        if self.encoder.backend is not None and renderer.template is not None:
            self.cutter = SpecialCut(self.encoder.backend, renderer.template_text)
        self.eos_id = tokenizer.convert_tokens_to_ids(renderer.eos)
        self.max_length, self.max_prompt_length = max_length, max_prompt_length
        self.overflow, self.boundary = overflow, boundary
        self.pairs: Sequence[PreferencePair] = ()
        self.base = 0
        self.out = _Chunk()

    def note(self, i: int, what: str) -> None:
        if len(self.out.notes) < _MAX_EXAMPLES:
            self.out.notes.append(f"{self.pairs[i - self.base].origin}: {what}")

    def drop(self, i: int, reason: str, detail: str = "") -> None:
        self.out.dropped[reason] += 1
        self.note(i, f"{reason}: {detail}" if detail else reason)

    def _boundary(self, plan: _Plan, head: list[int], tails: list[tuple],
                  prompt_ids: list[int] | None) -> tuple[list[list[int]], int, bool]:
        """(full ids of each text, shared prompt tokens, clean) of one pair; ``tails``: the
        (ids, encoding) of each full text after ``head`` (chosen, rejected, gold if any)."""
        fulls = [head + ids for ids, _ in tails]
        if tails[0][1] is None:  # no offsets: compare with the prompt's own tokenization
            ks = [_common(full, prompt_ids) for full in fulls]
            return fulls, min(ks), all(k == len(prompt_ids) for k in ks)
        end = plan.rendered.prompt_chars - plan.cut
        splits = [_split_encoding(enc, end) for _, enc in tails]
        firsts = [ids[:k] for (ids, _), (k, _) in zip(tails, splits)]
        if all(ok and k == splits[0][0] for k, ok in splits) and all(
                f == firsts[0] for f in firsts[1:]):
            return fulls, len(head) + splits[0][0], True
        return fulls, len(head) + min(_common(firsts[0], f) for f in firsts[1:]), False

    def _fit(self, i: int, prompt: list[int], responses: list[list[int]],
             ) -> tuple[list[int], list[list[int]]] | None:
        """``prompt`` and ``responses`` within the length limits, or None (dropped, counted)."""
        out = self.out
        if self.max_prompt_length is not None and len(prompt) > self.max_prompt_length:
            prompt = prompt[-self.max_prompt_length:]
            out.prompts_truncated += 1
        longest = max(map(len, responses))
        if self.max_length is not None and len(prompt) + longest > self.max_length:
            if self.overflow == "drop":
                self.drop(i, "too_long", f"{len(prompt)} + {longest} tokens")
                out.overlong.append(len(prompt) + longest)
                return None
            budget = max(0, self.max_length - len(prompt))
            responses = [resp[:budget] for resp in responses]
            out.responses_truncated += 1
        return prompt, responses

    def add(self, plan: _Plan, head: list[int], tails: list[tuple], prompt_ids=None) -> None:
        i, r, out = plan.index, plan.rendered, self.out
        fulls, k, clean = self._boundary(plan, head, tails, prompt_ids)
        if r.fallback:
            out.template_fallbacks += 1
        if not clean:
            out.boundary_mismatches += 1
            if self.boundary == "drop":
                self.drop(i, "boundary_mismatch")
                return
            self.note(i, "boundary_mismatch (shifted)")
        responses = [full[k:] for full in fulls]  # chosen, rejected[, gold]
        for resp, eos in zip(responses, (r.chosen_eos, r.rejected_eos, r.gold_eos)):
            if not eos:
                resp.append(self.eos_id)
        # an unpaired example's empty side: its text was the other side's, its tokens are none
        skip = ("chosen", "rejected").index(r.empty) if r.empty else -1
        if skip >= 0:
            responses[skip] = []
        fitted = self._fit(i, fulls[0][:k], responses)
        if fitted is None:
            return
        prompt, responses = fitted
        if not prompt:
            self.drop(i, "empty_prompt")
            return
        if any(not resp for j, resp in enumerate(responses) if j != skip):
            self.drop(i, "empty_response")
            return
        gold = responses[2] if len(responses) > 2 else []
        out.examples.append(TokenizedPair(prompt, responses[0], responses[1], gold))
        out.indices.append(i)

    def _plan(self, i: int) -> _Plan | None:
        pair = self.pairs[i - self.base]
        # no response at all (pairs built by hand, not by load_pairs); one empty side is an
        # unpaired example's
        if not pair.chosen and not pair.rejected:
            self.drop(i, "empty_response")
            return None
        try:
            r = self.renderer.pair(pair)
        except TemplateError as err:
            self.drop(i, "template_error", str(err)[:200])
            return None
        plan = _Plan(i, r)
        found = self.cutter.cut(tuple(r.texts()), r.prompt_chars) if self.cutter else None
        if found:
            plan.cut, plan.cut_id = found
        return plan

    def __call__(self, pairs: Sequence[PreferencePair], base: int) -> _Chunk:
        """Tokenize ``pairs``, the source's pairs ``base`` to ``base + len(pairs) - 1``."""
        self.pairs, self.base, self.out = pairs, base, _Chunk(pairs=len(pairs))
        try:
            self._encode(range(base, base + len(pairs)))
            return self.out
        finally:
            self.pairs = ()

    def _encode(self, span: range) -> None:
        plans = [p for p in map(self._plan, span) if p is not None]
        encoded = iter(self.encoder.encode([t for p in plans for t in _to_encode(p)]))
        parts: list[tuple] = []
        retry: list[int] = []
        for j, p in enumerate(plans):
            head = list(self.encoder.lead)
            if p.cut:
                ids, _ = next(encoded)
                if not ids or ids[-1] != p.cut_id:  # the head did not end as expected: no cut
                    retry.append(j)
                head += ids
            parts.append((head, _tails(p, encoded), None))
        if retry:
            for j in retry:
                plans[j].cut = 0
            again = iter(self.encoder.encode([t for j in retry for t in _to_encode(plans[j])]))
            for j in retry:
                parts[j] = (list(self.encoder.lead), _tails(plans[j], again), None)
        if self.encoder.backend is None:
            heads = self.encoder.encode([p.rendered.chosen[: p.rendered.prompt_chars] for p in plans])
            parts = [(h, tails, self.encoder.lead + ids)
                     for (h, tails, _), (ids, _) in zip(parts, heads)]
        for p, (head, tails, prompt_ids) in zip(plans, parts):
            self.add(p, head, tails, prompt_ids)


def _to_encode(plan: _Plan) -> list[str]:
    """The texts of one pair to encode: the shared head when cut, then the rest of each full
    text, the empty side of an unpaired example left out (it is a copy of the other side)."""
    r, n = plan.rendered, plan.cut
    texts = r.texts()
    if r.empty:
        del texts[1]  # chosen and rejected are the same text
    return [texts[0][:n], *(t[n:] for t in texts)] if n else texts


def _tails(plan: _Plan, encoded: Iterator) -> list[tuple]:
    """The (ids, encoding) of each full text of ``plan`` after its head, read from
    ``encoded`` (in :func:`_to_encode`'s order): chosen, rejected, gold if any."""
    r = plan.rendered
    tails = [next(encoded) for _ in range(len(r.texts()) - bool(r.empty))]
    if r.empty:
        tails.insert(1, tails[0])
    return tails


class _Total:
    """The chunks of one tokenization merged in order: into a store builder, and counted."""

    def __init__(self, builder):
        self.builder = builder
        self.out = _Chunk()

    def add(self, chunk: _Chunk) -> None:
        self.builder.append(chunk.examples, chunk.indices)
        out = self.out
        out.pairs += chunk.pairs
        out.dropped.update(chunk.dropped)
        for name in _COUNTS:
            setattr(out, name, getattr(out, name) + getattr(chunk, name))
        out.notes += chunk.notes[:_MAX_EXAMPLES - len(out.notes)]
        out.overlong += chunk.overlong

    def counts(self) -> dict:
        """What a store's header keeps of the report."""
        out = self.out
        return {"pairs": out.pairs, "kept": self.builder.pairs, "dropped": dict(out.dropped),
                "overlong": list(out.overlong), "notes": list(out.notes),
                **{name: getattr(out, name) for name in _COUNTS}}


def chunked(pairs: Iterable[PreferencePair], size: int = _CHUNK) -> Iterator[tuple[list, int]]:
    """(chunk of ``pairs``, position of its first pair) for each ``size`` pairs."""
    chunk: list = []
    base = 0
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk, base
            base += size
            chunk = []
    if chunk:
        yield chunk, base


def _vocab_size(tokenizer) -> int | None:
    """Ids the tokenizer can produce (added tokens included), or None when it does not say."""
    for size in (lambda: len(tokenizer), lambda: len(tokenizer.get_vocab())):
        try:
            return size()
        except (TypeError, AttributeError):
            continue
    return None


def _check_settings(max_length, max_prompt_length, overflow, boundary) -> dict:
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
    if boundary not in BOUNDARY_POLICIES:
        raise ValueError(f"boundary must be one of {BOUNDARY_POLICIES}, got {boundary!r}")
    for name, value in (("max_length", max_length), ("max_prompt_length", max_prompt_length)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return {"max_length": max_length, "max_prompt_length": max_prompt_length,
            "overflow": overflow, "boundary": boundary}


class Tokenization:
    """One tokenizer with one set of settings: the cache key of a source, the cached store,
    and the tokenization of a stream of pairs into a store.

    Args: as :func:`tokenize_pairs`.
    """

    def __init__(self, tokenizer, max_length: int | None, max_prompt_length: int | None, *,
                 overflow: str = "drop", boundary: str = "shift",
                 chat_template: str | None = None):
        self.settings = _check_settings(max_length, max_prompt_length, overflow, boundary)
        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer, chat_template)
        self.dtype = ids_dtype(_vocab_size(tokenizer))

    def key(self, **source: object) -> str:
        """The cache key of the pairs that ``source`` (JSON-serializable parts) identifies."""
        r = self.renderer
        return cache.cache_key(**source, tokenizer=cache.tokenizer_fingerprint(self.tokenizer),
                               template=r.template, eos=r.eos, dtype=self.dtype.str,
                               add_special_tokens=r.add_special_tokens, **self.settings)

    def _report(self, **kw) -> TokenizeReport:
        return TokenizeReport(chat_template=self.renderer.template is not None,
                              settings=dict(self.settings), **kw)

    def cached(self, path: Path | None, start: float) -> TokenizeResult | None:
        """The result stored at ``path`` (a cache hit), or None."""
        store = TokenStore.open(path) if path is not None else None
        if store is None:
            return None
        report = self._report(cache="hit", cache_path=str(path))
        _fill(report, store.header["report"], store)
        report.seconds = time.perf_counter() - start
        return TokenizeResult(store, report)

    def run(self, chunks: Callable[[], Iterable[tuple[Sequence[PreferencePair], int]]],
            path: Path | None, *, num_proc: int = 1, progress: bool = False,
            total: int | None = None, header: Callable[[], dict] = dict,
            start: float | None = None) -> TokenizeResult:
        """Tokenize the pairs of ``chunks()`` (a fresh iterator of :func:`chunked` pairs) into
        a store at ``path``; in memory when ``path`` is None or cannot be written (then
        ``chunks()`` is read again). ``header()`` adds to the store's header once the chunks
        are read (e.g. the load report of a streamed source)."""
        start = time.perf_counter() if start is None else start
        status, store = "off" if path is None else "miss", None
        if path is not None:
            try:
                with build_in(path, self.dtype) as builder:
                    merged = self._tokenize(chunks(), builder, num_proc, progress, total)
                    builder.seal({"report": merged.counts(), **header()})
                store = TokenStore.open(path)
            except OSError:
                store = None
            if store is None:
                status = "unwritable"
        if store is None:
            merged = self._tokenize(chunks(), StoreBuilder(self.dtype), num_proc, progress, total)
            store = merged.builder.finish({"report": merged.counts(), **header()})
        report = self._report(cache=status, cache_path=str(path) if status == "miss" else None)
        _fill(report, store.header["report"], store)
        report.seconds = time.perf_counter() - start
        return TokenizeResult(store, report)

    def pairs(self, pairs: Sequence[PreferencePair], cache_dir: str | Path | None, *,
              num_proc: int = 1, progress: bool = False,
              start: float | None = None) -> TokenizeResult:
        """Pairs held in memory, keyed on their messages in ``cache_dir`` (None: no cache)."""
        start = time.perf_counter() if start is None else start
        path = None
        if cache_dir is not None:
            path = cache.store_path(cache_dir, self.key(data=cache.data_fingerprint(pairs)))
            hit = self.cached(path, start)
            if hit is not None:
                return hit
        return self.run(lambda: chunked(pairs), path, num_proc=num_proc, progress=progress,
                        total=len(pairs), start=start)

    def _tokenize(self, chunks, builder, num_proc: int, progress: bool, total: int | None) -> _Total:
        merged = _Total(builder)
        run = _Run(self.tokenizer, self.renderer, self.settings["max_length"],
                   self.settings["max_prompt_length"], self.settings["overflow"],
                   self.settings["boundary"])
        with progress_bar(show=progress, unit="pairs", transient=True) as bar:
            task = bar.add_task("tokenizing", total=total) if bar else None
            for chunk in map_chunks(run, chunks, num_proc):
                merged.add(chunk)
                if bar:
                    bar.update(task, completed=merged.out.pairs)
        return merged


def _fill(report: TokenizeReport, counts: dict, store: TokenStore) -> None:
    """``report``'s counts from a store header's ``report`` and its lengths from the store."""
    report.pairs, report.kept = counts["pairs"], counts["kept"]
    report.dropped = dict(counts["dropped"])
    report.overlong = list(counts["overlong"])
    report.examples = list(counts["notes"])
    for name in _COUNTS:
        setattr(report, name, counts[name])
    lengths = store.lengths
    report.prompt_lengths, report.chosen_lengths, report.rejected_lengths, report.gold_lengths = (
        lengths[:, 0], lengths[:, 1], lengths[:, 2], lengths[:, 3])
    report.tokens = int(lengths.sum())
    report.store_bytes = store.nbytes


def tokenize_pairs(pairs: Sequence[PreferencePair], tokenizer, max_length: int | None,
                   max_prompt_length: int | None, cache_dir: str | Path | None = None, *,
                   overflow: str = "drop", boundary: str = "shift",
                   chat_template: str | None = None, progress: bool = False,
                   num_proc: int = 1) -> TokenizeResult:
    """Token ids of ``pairs`` for ``tokenizer`` (see the module docstring for the guarantees).

    Args:
        pairs: from :func:`asft.data.load_pairs`.
        tokenizer: a transformers tokenizer with an EOS token (fast ones are much faster).
        max_length: limit on ``len(prompt) + len(longest response)`` (gold included), or None.
        max_prompt_length: limit on the prompt, keeping its end, or None.
        cache_dir: folder of the on-disk cache (token stores keyed on the pairs' messages),
            or None for an in-memory store.
        overflow: ``"drop"`` or ``"truncate"`` pairs over ``max_length``.
        boundary: ``"shift"`` or ``"drop"`` pairs with a boundary mismatch.
        chat_template: a Jinja template to use instead of the tokenizer's.
        progress: show a progress bar with ETA.
        num_proc: worker processes (:mod:`asft.data.parallel`); the result does not depend on it.
    """
    start = time.perf_counter()
    job = Tokenization(tokenizer, max_length, max_prompt_length, overflow=overflow,
                       boundary=boundary, chat_template=chat_template)
    return job.pairs(pairs, cache_dir, num_proc=num_proc, progress=progress, start=start)
