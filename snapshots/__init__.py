"""The real-data side (the mirror of ``catalog/``): source readers and fingerprinted, split,
cached snapshots. numpy and pillow only: no Prefect, no MLflow."""
