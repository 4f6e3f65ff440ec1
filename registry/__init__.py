"""The MLflow side, without Prefect: the pyfunc model code of generators and extractors, the
registered-model names, loading a version and materialising a virtual dataset. A consumer needs
this package and ``catalog/`` only; the tracking URI comes from MLflow's own configuration
(``MLFLOW_TRACKING_URI``)."""
