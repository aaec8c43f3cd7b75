"""Native CPU kernels (C++ XLA FFI handlers), compiled on first use; see ``loader``."""
