"""Kubernetes settings applied to pipeline tasks (ignored by kfp.local, honoured on a cluster)."""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineParameterChannel

from cdarts.trainjob.spec import SETTINGS_ENV, TrainJobSettings
from pipelines.options import PipelineOptions
from stages import size_gpu_task

SETTINGS_KEYS = ("CDARTS_MLFLOW_TRACKING_URI", "CDARTS_S3_ENDPOINT")
POD_LABEL = ("cdarts.io/pipeline-task", "true")
SCRATCH_PATH = "/scratch"


def _attach_common(task: PipelineTask, options: PipelineOptions, timeout_seconds: int) -> None:
    """Labels, annotations, pull secrets, settings, secret references, scratch space, timeout."""
    for key, value in {POD_LABEL[0]: POD_LABEL[1], **options.pod_labels}.items():
        kubernetes.add_pod_label(task, key, value)
    for key, value in options.pod_annotations.items():
        kubernetes.add_pod_annotation(task, key, value)
    if options.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(options.image_pull_secrets))
    if timeout_seconds > 0:
        kubernetes.set_timeout(task, timeout_seconds)
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
    if options.scratch_size:
        # KFP's task spec has no ephemeral-storage request; a generic ephemeral volume is the
        # scheduled, size-requested scratch space (downloads and temporary files go there).
        kubernetes.add_ephemeral_volume(
            task,
            volume_name="scratch",
            mount_path=SCRATCH_PATH,
            access_modes=["ReadWriteOnce"],
            size=options.scratch_size,
            storage_class_name=options.scratch_storage_class,
        )
        task.set_env_variable("TMPDIR", SCRATCH_PATH)


def configure_cpu_task(
    task: PipelineTask, options: PipelineOptions, display_name: str, *, reads_data: bool = False
) -> PipelineTask:
    """A CPU task; ``reads_data`` tasks (data_prep) also mount the data volumes."""
    task.set_display_name(display_name)
    task.set_cpu_limit(options.cpu_task_cpu_limit).set_memory_limit(options.cpu_task_memory_limit)
    task.set_caching_options(options.enable_caching)
    _attach_common(task, options, options.cpu_task_timeout_seconds)
    if reads_data:
        for volume in options.data_volumes:
            kubernetes.mount_pvc(task, pvc_name=volume.claim, mount_path=volume.mount_path)
    return task


def add_gpu_sizing(
    options: PipelineOptions,
    gpus: PipelineParameterChannel,
    nodes: int | PipelineParameterChannel,
    display_name: str,
) -> PipelineTask:
    """The task that scales the per-GPU requests by the run's ``gpus`` (cacheable, seconds)."""
    sizing = size_gpu_task(
        gpus=gpus,
        nodes=nodes,
        cpu_per_gpu=options.gpu_cpu_request,
        cpu_limit_per_gpu=options.gpu_cpu_limit,
        memory_per_gpu=options.gpu_memory_request,
        memory_limit_per_gpu=options.gpu_memory_limit,
    )
    configure_cpu_task(sizing, options, display_name)
    return sizing.set_cpu_limit("500m").set_memory_limit("512M")


def configure_gpu_task(
    task: PipelineTask,
    options: PipelineOptions,
    display_name: str,
    sizing: PipelineTask | None,
    node_selector: PipelineParameterChannel,
    tolerations: PipelineParameterChannel,
    resumable: bool,
) -> PipelineTask:
    """GPU, CPU/memory (from ``sizing``, or one GPU's worth without it), a memory-backed /dev/shm
    for DataLoader workers, scheduling, secrets and, for the stages that resume from
    checkpoints, retries with exponential backoff."""
    task.set_display_name(display_name)
    task.set_accelerator_type(options.accelerator_type)
    if sizing is None:
        task.set_accelerator_limit(1)
        task.set_cpu_request(options.gpu_cpu_request).set_cpu_limit(options.gpu_cpu_limit)
        task.set_memory_request(options.gpu_memory_request).set_memory_limit(options.gpu_memory_limit)
    else:
        size = sizing.outputs
        # KFP 2.17 does not count outputs read by resource fields as a dependency: say it.
        task.after(sizing)
        task.set_accelerator_limit(size["accelerators"])
        task.set_cpu_request(size["cpu_request"]).set_cpu_limit(size["cpu_limit"])
        task.set_memory_request(size["memory_request"]).set_memory_limit(size["memory_limit"])
    task.set_caching_options(options.enable_caching)
    if resumable and options.retries > 0:
        task.set_retry(num_retries=options.retries, backoff_duration=options.retry_backoff, backoff_factor=2.0)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=options.shm_size
    )
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    _attach_common(task, options, options.gpu_task_timeout_seconds)
    return task


def attach_trainjob_settings(task: PipelineTask, options: PipelineOptions) -> PipelineTask:
    """Hand the search task what its TrainJob needs when the run asks for ``nodes`` > 1: the
    compiled image, secrets, labels, volumes and timeout. CPU and memory are per GPU here; the
    task scales them by the run's ``gpus`` and adds the run's node selector and tolerations."""
    settings = TrainJobSettings(
        image=options.gpu_image,
        node_selector=dict(options.node_selector),
        tolerations=tuple(t.to_json() for t in options.tolerations),
        cpu_request=options.gpu_cpu_request,
        cpu_limit=options.gpu_cpu_limit,
        memory_request=options.gpu_memory_request,
        memory_limit=options.gpu_memory_limit,
        accelerator_resource=options.accelerator_type,
        image_pull_secrets=options.image_pull_secrets,
        pod_labels=dict(options.pod_labels),
        pod_annotations=dict(options.pod_annotations),
        s3_secret=options.s3_secret,
        s3_secret_fields=options.s3_secret_fields,
        mlflow_secret=options.mlflow_secret,
        settings_config_map=options.settings_config_map,
        shm_size=options.shm_size,
        scratch_size=options.scratch_size,
        scratch_storage_class=options.scratch_storage_class,
        timeout_seconds=options.gpu_task_timeout_seconds or None,
    )
    return task.set_env_variable(SETTINGS_ENV, settings.to_json())
