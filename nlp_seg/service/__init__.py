"""The HTTP service over a saved segmenter."""
