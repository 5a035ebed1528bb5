"""Where an artifact's bytes are: URI resolution and pinned companions (:mod:`.uris`), and the sha256
digests cached by file state (:mod:`.digests`).
"""
