"""asft: preference alignment of causal LMs with ASFT (arXiv 2409.10571) and its baselines.

Data flows one way: records -> tokens -> batches -> log-probs -> loss -> optimizer step ->
metrics. Each stage lives in the module its name suggests (see docs/architecture.md).
"""

__version__ = "0.1.0"
