"""The MLflow pyfunc model of a snapshot's pinned feature extractor, logged as code (no pickle).

Input: uint8 images (n, C, H, W). Output: float64 features (n, feature_dim), the space every
FID-like, KID and PRDC score of that dataset was computed in.
"""

import json

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class ExtractorModel(PythonModel):
    def load_context(self, context):
        from gan.checkpoint import load_weights
        from gan.features import SmallCNN

        meta = json.loads(open(context.artifacts["meta"]).read())
        state, _ = load_weights(context.artifacts["weights"])  # a pickle-free .npz
        self.model = SmallCNN(meta["channels"], meta["outputs"], meta["feature_dim"], meta.get("stages", 1))
        self.model.load_state_dict(state)
        self.model.eval().requires_grad_(False)

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        from gan.features import extract

        return extract(self.model, np.asarray(model_input, dtype=np.uint8))


mlflow.models.set_model(ExtractorModel())
