"""The pipeline's stages, one module each: normalise, fuse, reduce, cluster, place, name."""
