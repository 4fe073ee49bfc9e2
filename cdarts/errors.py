"""User-facing error types.

Anything raised as a :class:`CdartsError` is a problem with the user's input (config, genotype,
file, checkpoint) and is reported by the CLI as one line on stderr with exit code 2, never as a
traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class CdartsError(Exception):
    """Base class of errors caused by bad input; the message is shown to the user as is."""


class ConfigError(CdartsError):
    """The experiment config is missing, malformed or has an unknown key or wrong type."""


class GenotypeError(CdartsError):
    """A genotype string, file or name could not be parsed or is not a valid cell."""


class CheckpointError(CdartsError):
    """A checkpoint or alphas file is missing, corrupt or does not match the config."""


class DataError(CdartsError):
    """A data source or prepared dataset is missing, corrupt or inconsistent with the config."""


class StorageError(CdartsError):
    """An object-store operation failed (unreachable, refused credentials, missing or corrupt object)."""


class TrackingError(CdartsError):
    """The MLflow tracking server or model registry cannot be used."""


class DiskError(CdartsError):
    """A file could not be written (full disk, read-only or missing directory, permissions)."""


class TrainingDivergedError(CdartsError):
    """Training produced a non-finite loss term or non-finite weights; nothing is marked complete."""
