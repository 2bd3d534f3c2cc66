"""MLflow pyfunc model (models-from-code) serving an exported network's torch.export program.

`experiments.export.register_export` logs this file as the model's code, with the export's
`model.pt2` as its artifact `pt2`: MLflow copies it into the logged model and runs it at load
time, so `mlflow.pyfunc.load_model(...)` needs only mlflow, torch and numpy, never this project.
It must therefore import nothing from the project. (The file keeps its name from the TorchScript
days; models registered then carry their own copy of the old code and still load.)
"""

from __future__ import annotations

import warnings

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

# MLflow warns at class creation that an untyped predict() gets no input validation; the logged
# signature (a float32 tensor spec) is the validation here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class ExportedProgramClassifier(PythonModel):
        """predict(images) -> class scores; images float32 (batch, C, H, W), pixels / 255, at
        the size the export card names (any padding happens inside the program)."""

        def load_context(self, context) -> None:
            # an exported program is already in eval mode (its module refuses .eval())
            self.model = torch.export.load(context.artifacts["pt2"]).module()

        def predict(self, context, model_input, params=None):
            x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            with torch.no_grad():
                return self.model(x).numpy()


mlflow.models.set_model(ExportedProgramClassifier())
