"""The models behind the encoder pass (registry, bundled encoder, embedder, sentiment head and
scorers, cache) and the saved-segmenter store."""
