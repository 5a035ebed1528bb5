"""lakedemo: the code behind lakegen's demo lake.

Small multilayer perceptrons trained on two public scikit-learn datasets
(UCI handwritten digits and UCI wine), and everything needed to rebuild the
demo lake's artifacts and manifests from scratch:

- :mod:`lakedemo.nets` builds the networks (``build_mlp``);
- :mod:`lakedemo.train` trains them, and derives fine-tuned, LoRA, int8,
  pruned and merged variants;
- :mod:`lakedemo.evaluate` loads any demo artifact into a network and scores
  it on a dataset split;
- :mod:`lakedemo.export_datasets` exports the datasets to ``.npz`` (run once;
  the files are committed);
- :mod:`lakedemo.build_demo` is the one script that regenerates every model
  artifact and every manifest of the demo lake.
"""

__all__ = ["build_demo", "evaluate", "export_datasets", "nets", "train"]
