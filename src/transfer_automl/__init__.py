"""transfer-automl: multitask and transfer neural model search, native to Kubeflow."""

__version__ = "0.1.0"
