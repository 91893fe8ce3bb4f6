"""Networks (tensors in, tensors out) and the functions that load them from checkpoint files."""
