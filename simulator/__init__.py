"""Desktop fake sensor nodes for hardware-free use: ``python -m simulator`` (``make simulate``)."""
