"""Native CPU kernels where PyTorch's own are slow, built at run time (see native_library)."""
