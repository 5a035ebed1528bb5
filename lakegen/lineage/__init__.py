"""The catalog's lineage: every local model version fingerprinted and attributed (:mod:`.recover`),
declared edges compared with what the weights show (:mod:`.declared`), the audit of declared edges at
coordinates drawn from the child (:mod:`.audit`), search by weights (:mod:`.search`), and the compile
stage that puts it all into the lake index (:mod:`.stage`).
"""

READ = ("id", "kind", "versions", "base_models", "links", "architecture", "framework", "owners")
"""The manifest fields of a model that attribution reads (with their lines): here, apart from the
stage, for a compile that must tell whether an edit reaches attribution without importing it."""
