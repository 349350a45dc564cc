"""The one container image every component runs in: the project image, which has
transfer_automl and kfp installed (images/taml/Dockerfile). Bump the tag with a release."""

IMAGE = "ghcr.io/transfer-automl/taml:0.1.0"
