"""lakegen: a model lake compiled from YAML manifests into a verified governance site."""

__version__ = "0.1.0"
