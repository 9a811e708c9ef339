"""On-policy preference pairs (``asft pairs``): sample K answers per prompt with the model being
aligned, score them (the built-in tasks' verifier, an LLM judge, or a reward model), and write
the better/worse pairs in the explicit format that ``asft data check`` and ``asft train`` read.
This is how on-policy preference data is made from a model's own samples: highest against
lowest score per prompt, ties discarded, as in Self-Rewarding Language Models (Yuan et al.,
arXiv 2401.10020) with an LLM judge, and correct against incorrect answers as in Iterative
Reasoning Preference Optimization (Pang et al., arXiv 2404.19733) with a verifier.

Modules, top to bottom (the import order, checked by ``lint-imports``): ``run`` (the phases and
the output file) -> ``sampling``, ``scoring`` (one phase each, resumable) -> ``scorers`` (picks
a scorer) -> ``builtin_score``, ``judge_score``, ``reward_model`` (one scorer each) ->
``store`` (side files with their settings), ``pairing`` (pure pair construction), ``prompts``
(reading SOURCE), ``config`` (the settings) -> ``items`` (the data types).
"""
