"""Training data: synthetic scenes, converters to clipsweep's shards, loading and augmentation through Ray Data."""
