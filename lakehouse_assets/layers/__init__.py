"""The medallion layers: raw files -> bronze -> silver -> gold -> features."""
