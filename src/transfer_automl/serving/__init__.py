"""Champions as services: a trained child as a self-contained MLflow pyfunc model (export.py
writes the bundle, champion_model.py is the model's own code), batch prediction over files
(predict.py)."""
