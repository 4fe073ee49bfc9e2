"""Local services for a laptop or CI: SeaweedFS (S3) and an MLflow server, on 127.0.0.1 only."""
