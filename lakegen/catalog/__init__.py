"""Reading a lake's manifests: the loader (:mod:`.loader`) reads each with the safe YAML reader
(:mod:`lakegen.safeyaml`, line numbers kept) and checks schema, references and artifact digests.
"""
