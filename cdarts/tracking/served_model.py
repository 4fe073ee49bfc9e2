"""The MLflow model file of a served cdarts classifier ("models from code").

MLflow executes this file when it loads the model, so nothing is unpickled: the network is
rebuilt from the ``model.pt`` artifact with the safe checkpoint loader. The ``cdarts`` package
travels with the model (``code_paths``), so a serving environment needs torch, torchvision and
numpy only.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.pyfunc.model import PythonModel, PythonModelContext

MODEL_ARTIFACT = "model"


class ServedClassifier(PythonModel):
    """Images N x H x W x C (uint8, or float32 in [0, 1]) -> N x K class probabilities."""

    def load_context(self, context: PythonModelContext) -> None:
        from cdarts.serving import load_classifier

        self.classifier = load_classifier(Path(context.artifacts[MODEL_ARTIFACT]))

    # No type hints here on purpose: MLflow would read them as a second, list-based signature.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if isinstance(model_input, dict) and len(model_input) == 1:  # a named single tensor
            (model_input,) = model_input.values()
        return self.classifier.predict(model_input)


mlflow.models.set_model(ServedClassifier())
