"""Pure-PyTorch GAN library: models, training loop, sampling, checkpoints, features, metrics.

Never imports Prefect or MLflow.
"""
