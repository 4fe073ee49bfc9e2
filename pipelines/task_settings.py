"""Kubernetes settings applied to pipeline tasks (ignored by kfp.local, honoured on a cluster)."""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineParameterChannel

from pipelines.options import PipelineOptions

SETTINGS_KEYS = ("CDARTS_MLFLOW_TRACKING_URI", "CDARTS_S3_ENDPOINT")
POD_LABEL = ("cdarts.io/pipeline-task", "true")


def _attach_settings_and_secrets(task: PipelineTask, options: PipelineOptions) -> None:
    kubernetes.add_pod_label(task, *POD_LABEL)
    if options.settings_config_map:
        kubernetes.use_config_map_as_env(
            task, options.settings_config_map, {key: key for key in SETTINGS_KEYS}, optional=True
        )
    # Credentials reach the pods only as references to Kubernetes Secrets, never as values.
    if options.s3_secret:
        access_field, secret_field = options.s3_secret_fields
        kubernetes.use_secret_as_env(
            task,
            options.s3_secret,
            {access_field: "AWS_ACCESS_KEY_ID", secret_field: "AWS_SECRET_ACCESS_KEY"},
            optional=True,
        )
    if options.mlflow_secret:
        kubernetes.use_secret_as_env(
            task,
            options.mlflow_secret,
            {
                "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
            },
            optional=True,
        )


def configure_cpu_task(task: PipelineTask, options: PipelineOptions, display_name: str) -> PipelineTask:
    task.set_display_name(display_name)
    task.set_cpu_limit(options.cpu_task_cpu_limit).set_memory_limit(options.cpu_task_memory_limit)
    task.set_caching_options(options.enable_caching)
    _attach_settings_and_secrets(task, options)
    return task


def configure_gpu_task(
    task: PipelineTask,
    options: PipelineOptions,
    display_name: str,
    gpus: int | PipelineParameterChannel,
    resumable: bool,
) -> PipelineTask:
    """GPU, CPU/memory, a memory-backed /dev/shm for DataLoader workers, scheduling, secrets and,
    for the stages that resume from checkpoints, retries with exponential backoff."""
    task.set_display_name(display_name)
    task.set_accelerator_type(options.accelerator_type).set_accelerator_limit(gpus)
    task.set_cpu_request(options.gpu_cpu_request).set_cpu_limit(options.gpu_cpu_limit)
    task.set_memory_request(options.gpu_memory_request).set_memory_limit(options.gpu_memory_limit)
    task.set_caching_options(options.enable_caching)
    if resumable and options.retries > 0:
        task.set_retry(num_retries=options.retries, backoff_duration=options.retry_backoff, backoff_factor=2.0)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=options.shm_size
    )
    for key, value in options.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in options.tolerations:
        kubernetes.add_toleration(
            task, key=toleration.key, operator=toleration.operator, value=toleration.value, effect=toleration.effect
        )
    _attach_settings_and_secrets(task, options)
    return task
