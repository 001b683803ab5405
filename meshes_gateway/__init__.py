"""meshes-gateway: self-hosted event routing gateway."""

__version__ = "0.1.0"
