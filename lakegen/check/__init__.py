"""``lakegen check``: the PR report's stages (:mod:`.report`) and its text, markdown and JSON output
(:mod:`.render`).
"""
