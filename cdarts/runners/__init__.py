"""One plain function per pipeline stage: local paths in, local paths out."""
