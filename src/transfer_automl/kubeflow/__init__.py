"""Kubeflow from the command line: load and compile the pipeline definitions of a checkout
(`pipelines/<name>/pipeline.py`), run them locally through kfp.local, submit and schedule them
with kfp.Client, and check a cluster before the first run (`taml cluster doctor`).

kfp and kubernetes are imported inside the functions that use them (tests/unit/test_layering.py):
nothing else in transfer_automl needs them, and `taml search` should not pay for them.
"""
