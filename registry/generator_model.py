"""The MLflow pyfunc model of a generator, logged as code (no pickle).

Input: a table with an integer ``seed`` column (and ``label`` for conditional generators), one
row per image. Output: uint8 images (n, C, H, W). Row r gives the image of ``seed[r]`` (and
``label[r]``) whatever the other rows: the same seed always gives the same image.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class GeneratorModel(PythonModel):
    def load_context(self, context):
        from gan.checkpoint import load_generator

        # a pickle-free weights file (.npz); versions registered before it carry a checkpoint
        self.G = load_generator(context.artifacts.get("generator") or context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        from gan.sampling import sample_seeds

        seeds = np.asarray(model_input["seed"], dtype=np.int64)
        labels = None
        if self.G.cfg.conditional:
            if "label" not in model_input:
                raise ValueError("this generator is conditional: the input needs a 'label' column")
            labels = np.asarray(model_input["label"], dtype=np.int64)
        return sample_seeds(self.G, seeds, labels)


mlflow.models.set_model(GeneratorModel())
