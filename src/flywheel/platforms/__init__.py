"""Model platforms: one port (``base.ModelPlatform``), a ``nemo`` (NMP) and a ``local`` adapter."""
