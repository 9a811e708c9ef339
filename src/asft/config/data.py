"""The ``data`` section: one data spec for every command that reads pairs.

``asft train``, ``asft data check``, ``asft data prepare``, ``asft eval`` and ``asft compare``
all read their pairs through :class:`DataConfig` and :mod:`asft.data.spec`, so that a file
checked with some settings is trained on with exactly those settings. The rules (formats,
column keys, policies) belong to the data layer; this section only names them, and asks the
data layer to judge the values (:func:`asft.data.spec.check`), so that nothing is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asft.config.schema import FieldError, Section, require


@dataclass
class DataConfig(Section):
    """Where the preference pairs come from, how records are read, and how they are cut."""

    source: str = "builtin:mixed"
    """A data source: ``builtin:<task>``, a file (.jsonl, .json, .csv, .parquet, optionally
    .gz), a ``datasets`` folder or a hub id."""

    format: str = "auto"
    """Record format, detected from the first record with ``auto`` (docs/data.md shows each)."""

    columns: dict[str, str | list[str]] | str = field(default_factory=dict)
    """The source's column names for the format's fields, e.g. ``{chosen: good, rejected:
    bad}`` or the shorthand ``chosen=good,rejected=bad``; ranked data names its responses as
    a list, e.g. ``{responses: [response1, response2], label: winner}``."""

    split: str | None = None
    """Split of a ``datasets`` folder, hub data set or built-in task; null: the whole source."""

    system: str | None = None
    """A system prompt put first in every prompt that has none; null: none added."""

    on_bad_record: str = "error"
    """A bad record: ``error`` stops at the first (naming file, line and field), ``skip``
    skips and counts it by reason in data_report.json. Ties of ranked data are always skipped
    and counted."""

    empty_response: str = "keep"
    """A response whose text is empty: ``keep`` and count it, or ``bad`` (a bad record)."""

    labels: dict[str, str] = field(default_factory=dict)
    """Ranked data: label value -> the response column it picks, its 0-based index, or ``tie``
    (e.g. ``{0: tie, 1: response1, 2: response2}``); empty: an integer label is an index."""

    binarize: str = "random"
    """Rated data (UltraFeedback's completions): chosen is the best-rated completion, rejected
    a ``random`` lower-rated one (seeded, as the paper's data was built) or the ``worst``."""

    max_length: int = 1024
    """Longest prompt + longer response in tokens; see ``overflow`` for longer pairs. A warning
    says, at start-up and in ``asft data check``, when more than 10% of the pairs are longer."""

    max_prompt_length: int = 512
    """Longest prompt in tokens; longer prompts keep their end."""

    overflow: str = "drop"
    """Pairs longer than max_length: ``drop`` them (a cut response has no EOS, so its
    likelihood is not the response's), or ``truncate`` both responses to fit (TRL's way)."""

    boundary: str = "shift"
    """A pair whose prompt/response token boundary is not clean: ``shift`` the boundary to the
    last shared token (counted), or ``drop`` the pair."""

    probe_size: int = 16
    """Pairs held out from training and scored every ``logging.probe_every`` steps to follow
    the chosen and rejected likelihoods (0 disables the probe)."""

    limit: int | None = None
    """Read at most the first N pairs of the source (the probe included); null: all."""

    streaming: bool = False
    """Read a hub data set record by record as it downloads (``datasets`` streaming) instead
    of downloading it first; local files are always read record by record into the token
    store. A streamed hub set is cached under its id and split (no digest of its bytes)."""

    num_proc: int | None = None
    """Processes that tokenize (the token store is the same for any number); null: this
    machine's cores. Only the main process of a multi-process run tokenizes."""

    layout: Literal["shared", "plain"] = "shared"
    """Batch layout: ``shared`` computes each prompt once per pair (a 4D attention mask; models
    that ignore it fall back to ``plain`` automatically), ``plain`` one sequence per response."""

    pack: bool = True
    """Put several pairs in one row (first-fit into rows as long as the batch's longest pair)
    so that short pairs fill the padding of long ones; same loss and gradients, fewer positions
    computed. Needs the 4D attention mask, so it is off when the model falls back to ``plain``."""

    def __post_init__(self) -> None:
        # YAML reads `labels: {0: tie}` with integer keys and values; a label is matched as text
        if isinstance(self.labels, dict):
            self.labels = {str(k): v if isinstance(v, str) else str(v) for k, v in self.labels.items()}
        super().__post_init__()

    @classmethod
    def field_choices(cls) -> dict[str, list[str]]:
        from asft.data.spec import CHOICES

        return {name: list(values) for name, values in CHOICES.items()}

    def validate(self) -> None:
        from asft.data.spec import OptionError, check, parse_columns

        require(bool(self.source.strip()), "source", "must not be empty")
        require(8 <= self.max_length <= 1 << 20, "max_length", f"must be in [8, 1048576], got {self.max_length}")
        require(1 <= self.max_prompt_length < self.max_length, "max_prompt_length",
                 f"must be in [1, max_length={self.max_length}), got {self.max_prompt_length}")
        require(0 <= self.probe_size <= 100_000, "probe_size", f"must be in [0, 100000], got {self.probe_size}")
        require(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or null, got {self.limit}")
        require(self.num_proc is None or 1 <= self.num_proc <= 1024, "num_proc",
                f"must be in [1, 1024] or null, got {self.num_proc}")
        try:
            if isinstance(self.columns, str):
                self.columns = parse_columns(self.columns)
            check(self)
        except OptionError as err:
            raise FieldError(err.key, err.message) from None
