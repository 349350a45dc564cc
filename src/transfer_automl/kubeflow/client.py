"""Submit and schedule pipelines on a Kubeflow Pipelines v2 API server with kfp.Client.

Both compile the pipeline, upload it once (a pipeline per name; a version per compiled content,
named `<pipeline>-<content hash>`, so submitting the same YAML twice reuses its version), find or
create the experiment, then create a run (`submit`) or a recurring run (`schedule`).

Credentials, for a multi-user Kubeflow (`Auth`): `--existing-token` (a bearer token, e.g. `kubectl
create token default-editor -n <profile> --audience pipelines.kubeflow.org`), `--cookie` (the
session cookie of Kubeflow's login, e.g. `authservice_session=...` or `oauth2_proxy_kubeflow=...`),
else a projected service-account token at $KF_PIPELINES_SA_TOKEN_PATH (or KFP's default path
/var/run/secrets/kubeflow/pipelines/token when it exists: inside the cluster), else none (a
standalone KFP).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError, TamlError

DEFAULT_EXPERIMENT = "taml"
DEFAULT_SERVICE_ACCOUNT = "taml-pipeline-runner"  # manifests/base: the ServiceAccount with the runner Role
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")


class KubeflowError(TamlError, RuntimeError):
    """The Kubeflow Pipelines API refused a request or could not be reached."""


@dataclass
class Submitted:
    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str
    run_id: str | None = None  # submit
    recurring_run_id: str | None = None  # schedule
    cron: str | None = None  # schedule: the six-field expression sent


def kfp_cron(expression: str) -> str:
    """KFP's scheduler reads six-field cron (seconds first, robfig/cron); a five-field crontab
    expression such as "0 3 * * *" gets "0" seconds prepended. Anything else is refused."""
    fields = expression.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(f"--cron {expression!r} is not a cron expression of 5 fields (minute hour day month "
                          "weekday) or 6 (seconds first)")
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"  # kfp.client.KF_PIPELINES_SA_TOKEN_PATH


@dataclass(frozen=True)
class Auth:
    """How to authenticate to a multi-user Kubeflow Pipelines API (none: a standalone KFP)."""

    token: str | None = None  # a bearer token (kfp.Client's existing_token)
    cookie: str | None = None  # "name=value[; name=value]": Kubeflow's login session

    def __repr__(self) -> str:  # never print a credential
        return f"Auth(token={'***' if self.token else None}, cookie={'***' if self.cookie else None})"

    def client_kwargs(self) -> dict[str, Any]:
        """kfp.Client's keywords: the token or cookie given, else the service-account token file."""
        kwargs: dict[str, Any] = {}
        if self.cookie:
            kwargs["cookies"] = self.cookie
        if self.token:
            kwargs["existing_token"] = self.token
            return kwargs
        path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH")
        if path and not os.path.isfile(path):
            raise ConfigError(f"KF_PIPELINES_SA_TOKEN_PATH {path!r}: no such file (a projected service-account "
                              "token with audience pipelines.kubeflow.org)")
        path = path or (SA_TOKEN_PATH if os.path.isfile(SA_TOKEN_PATH) else None)
        if path:
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path)
        return kwargs


def connect(host: str, namespace: str | None = None, auth: Auth | None = None):
    import warnings

    from kfp import Client

    if not re.match(r"^https?://", host or ""):
        raise ConfigError(f"--host {host!r} is not an http(s) URL of the Kubeflow Pipelines API")
    with warnings.catch_warnings():  # "This client only works with KFP v2.0.0-beta.2 and later": we know
        warnings.simplefilter("ignore", FutureWarning)
        try:
            kwargs = (auth or Auth()).client_kwargs()
            return Client(host=host, namespace=namespace, **kwargs) if namespace else Client(host=host, **kwargs)
        except TamlError:
            raise
        except Exception as exc:
            raise KubeflowError(f"Kubeflow Pipelines API at {host} unreachable: {_reason(exc)}") from None


def upload(client, package: Path, pipeline_name: str, description: str, version_name: str) -> tuple[str, str]:
    """(pipeline id, version id): the pipeline created when new, the version reused when present."""
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:  # a new pipeline: the upload makes its first version
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name,
                                             description=description).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
        if not versions:
            raise KubeflowError(f"pipeline {pipeline_name!r} was uploaded (id {pipeline_id}) but has no version")
        return pipeline_id, versions[0].pipeline_version_id
    existing = _version_named(client, pipeline_id, version_name)
    if existing is not None:
        return pipeline_id, existing
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id,
                                             description=description)
    return pipeline_id, version.pipeline_version_id


def submit(package: Path, host: str, params: dict[str, Any], run_name: str, experiment: str = DEFAULT_EXPERIMENT,
           namespace: str | None = None, service_account: str | None = DEFAULT_SERVICE_ACCOUNT,
           version_name: str | None = None, auth: Auth | None = None) -> Submitted:
    """Upload the compiled pipeline at `package` and start one run of it."""
    client, pipeline_id, version_id, version, experiment_id = _prepare(package, host, experiment, namespace,
                                                                       version_name, auth)
    run = _call(host, lambda: client.run_pipeline(
        experiment_id, run_name, params=params, pipeline_id=pipeline_id, version_id=version_id,
        service_account=service_account or None))
    return Submitted(pipeline_id, version_id, version, experiment_id, run_id=run.run_id)


def schedule(package: Path, host: str, cron: str, params: dict[str, Any], name: str,
             experiment: str = DEFAULT_EXPERIMENT, namespace: str | None = None,
             service_account: str | None = DEFAULT_SERVICE_ACCOUNT, max_concurrency: int = 1,
             version_name: str | None = None, auth: Auth | None = None) -> Submitted:
    """Upload the compiled pipeline and create a recurring run on `cron`. One run at a time and no
    catch-up: a retraining that missed its slot runs once, not once per missed slot."""
    expression = kfp_cron(cron)
    client, pipeline_id, version_id, version, experiment_id = _prepare(package, host, experiment, namespace,
                                                                       version_name, auth)
    job = _call(host, lambda: client.create_recurring_run(
        experiment_id, name, cron_expression=expression, params=params, pipeline_id=pipeline_id,
        version_id=version_id, max_concurrency=max_concurrency, no_catchup=True,
        service_account=service_account or None))
    return Submitted(pipeline_id, version_id, version, experiment_id, recurring_run_id=job.recurring_run_id,
                     cron=expression)


def _prepare(package: Path, host: str, experiment: str, namespace: str | None, version_name: str | None,
             auth: Auth | None = None):
    import yaml

    from transfer_automl.kubeflow.pipelines import spec_digest

    spec = next(yaml.safe_load_all(Path(package).read_text()))  # the pipeline spec; then the platform spec
    info = spec.get("pipelineInfo", {})
    pipeline_name, description = info.get("name", Path(package).stem), info.get("description", "")
    version = version_name or f"{pipeline_name}-{spec_digest(package)}"
    client = connect(host, namespace, auth)
    pipeline_id, version_id = _call(host, lambda: upload(client, Path(package), pipeline_name, description, version))
    exp = _call(host, lambda: client.create_experiment(experiment, namespace=namespace))
    return client, pipeline_id, version_id, version, exp.experiment_id


def _version_named(client, pipeline_id: str, version_name: str) -> str | None:
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": version_name}]})
    versions = client.list_pipeline_versions(pipeline_id, filter=flt).pipeline_versions or []
    return next((v.pipeline_version_id for v in versions if v.display_name == version_name), None)


def _call(host: str, request):
    try:
        return request()
    except TamlError:
        raise
    except Exception as exc:  # kfp_server_api.ApiException, urllib3 errors, ValueError from kfp
        raise KubeflowError(f"Kubeflow Pipelines API at {host}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if status is not None:
        detail = body.decode() if isinstance(body, bytes) else str(body or getattr(exc, "reason", ""))
        return f"HTTP {status}: {detail.strip()[:300]}"
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
