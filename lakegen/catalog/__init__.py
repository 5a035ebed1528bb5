"""Reading a lake's manifests: safe YAML with line numbers (:mod:`.safeyaml`), the loader that checks
schema, references and artifact digests (:mod:`.loader`).
"""
