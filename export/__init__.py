"""licrt export: codec models in PyTorch and their conversion to bundles."""
