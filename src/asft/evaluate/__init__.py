"""Evaluation: generation metrics, pairwise metrics, MT-Bench judging, gradient analysis,
likelihood-dynamics plots and the method-comparison report.

Submodules are imported where used (they pull in torch, matplotlib or sacrebleu), so importing
``asft.evaluate`` itself is cheap.
"""
