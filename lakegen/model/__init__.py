"""The lake's data model: pydantic manifests (:mod:`.manifest`), their JSON Schema, and the compiled
lake index (:mod:`.index`). It sits at the bottom of the package and imports no stage.
"""
