"""The churn model as a standard MLflow model folder, built locally so that it can be uploaded
with plain artifact calls, which MLflow 2.x servers accept (`mlflow.sklearn.log_model` needs the
3.x-only logged-models API)."""

import hashlib
import logging
import warnings
from pathlib import Path

import pandas as pd

MODEL_FILE = "model.pkl"
EXAMPLE_ROWS = 5


def save_model_folder(model, x: pd.DataFrame, folder: Path) -> str:
    """Write `MLmodel`, `model.pkl` (a plain pickle), `requirements.txt`, `python_env.yaml` and an
    input example of `x` into `folder`; return the SHA-256 of `model.pkl`.

    The signature names the feature columns. The pyfunc flavour calls `predict_proba`, so its
    predictions are `[P(retained), P(churned)]` per row: column 1 is the churn probability."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = x.head(EXAMPLE_ROWS)
    # MLflow warns that pickles can run code when loaded (ours are verified by hash first), and
    # that integer columns cannot hold missing values (features never do: see features_finite).
    sklearn_logger = logging.getLogger("mlflow.sklearn")
    level = sklearn_logger.level
    sklearn_logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, model.predict_proba(example))
    try:
        mlflow.sklearn.save_model(
            model,
            str(folder),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            # Named, not inferred: inference would load the model in a subprocess.
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
        )
    finally:
        sklearn_logger.setLevel(level)
    return hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
