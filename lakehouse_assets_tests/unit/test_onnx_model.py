"""The churn model as ONNX: every model type the pipeline trains converts and gives the pickle's
probabilities within 1e-6; a model without a converter says so; the MLflow folder loads."""

import hashlib

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from lakehouse_assets.defs.model.churn_model import ChurnModelConfig, build_estimator
from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.model import onnx_model
from lakehouse_assets.lib.model.scoring import churn_probability

ROWS = 3_000


class FutureClassifier(LogisticRegression):
    """A classifier skl2onnx has no converter for (it looks converters up by exact type)."""


@pytest.fixture(scope="module")
def features() -> tuple[pd.DataFrame, np.ndarray]:
    """Counts (int64) and heavy-tailed amounts and trends of both signs (float64), as the
    feature table holds them."""
    rng = np.random.default_rng(7)
    columns = {}
    for i, name in enumerate(FEATURE_COLUMNS):
        if i % 3 == 0:
            columns[name] = rng.poisson(3, ROWS).astype("int64")
        else:
            columns[name] = rng.standard_cauchy(ROWS) * 50 * (1 if i % 2 else -1)
    x = pd.DataFrame(columns)
    churned = (x[FEATURE_COLUMNS[0]] < 3) ^ (rng.random(ROWS) < 0.2)
    return x, churned.astype(int).to_numpy()


def batches(x: pd.DataFrame):
    table = pa.table({"customer_id": [f"c{i}" for i in range(len(x))], **x})
    return table.to_batches(max_chunksize=1_000)


@pytest.mark.parametrize(
    ("model_type", "precision"),
    [
        ("logistic_regression", "double"),
        ("random_forest", "float"),  # scikit-learn walks its trees in float32 too
    ],
)
def test_every_convertible_model_type_agrees_with_the_pickle(features, model_type, precision):
    x, y = features
    config = ChurnModelConfig(model_type=model_type, n_estimators=20, max_depth=6)
    model = build_estimator(config).fit(x, y)
    converted = onnx_model.convert(model, x)
    assert converted.precision == precision
    scorer = onnx_model.OnnxScorer(onnx_model.session(converted.model.SerializeToString()))
    inputs = {i.name: i.type for i in scorer.session.get_inputs()}
    assert list(inputs) == list(FEATURE_COLUMNS)
    assert inputs[FEATURE_COLUMNS[0]] == "tensor(int64)"
    assert inputs[FEATURE_COLUMNS[1]] == "tensor(double)"
    parity = onnx_model.parity(model, scorer, batches(x))
    assert parity.customers == ROWS and parity.holds, parity
    if model_type == "logistic_regression":  # the arcsinh written as ONNX: to the last bits
        assert parity.max_abs_diff < 1e-12


def test_a_random_forest_in_double_would_disagree_which_is_why_it_is_float(features):
    """Why FLOAT32_TREES: compared in double, rows within a float32 step of a threshold take
    the other branch. Features a hair above each split are built to show it."""
    x, y = features
    model = build_estimator(ChurnModelConfig(model_type="random_forest", n_estimators=5)).fit(x, y)
    tree = model.estimators_[0].tree_
    near = x.copy()
    for i, (feature, threshold) in enumerate(zip(tree.feature, tree.threshold, strict=True)):
        if feature >= 0 and near.dtypes.iloc[feature].kind == "f":
            near.iloc[i % ROWS, feature] = np.nextafter(threshold, np.inf)  # float32 rounds it down
    core = onnx_model._skl2onnx(model, model, len(FEATURE_COLUMNS), "double")
    double = onnx_model._with_columns(core, near, "double", arcsinh=False)
    scored = onnx_model.OnnxScorer(onnx_model.session(double.SerializeToString()))(near)
    assert onnx_model.differences(scored, churn_probability(model, near)).max() > 1e-6
    in_float = onnx_model.convert(model, near)  # float, which agrees on the same rows
    scored = onnx_model.OnnxScorer(onnx_model.session(in_float.model.SerializeToString()))(near)
    assert onnx_model.differences(scored, churn_probability(model, near)).max() <= 1e-6


def test_hist_gradient_boosting_is_not_converted_and_says_why(features):
    x, y = features
    config = ChurnModelConfig(model_type="hist_gradient_boosting", n_estimators=20)
    with pytest.raises(onnx_model.NotConvertible, match="splits differently from scikit-learn"):
        onnx_model.convert(build_estimator(config).fit(x, y), x)


def test_a_missing_or_fractional_count_is_an_error_naming_its_column(features):
    x, y = features
    model = build_estimator(ChurnModelConfig()).fit(x, y)
    scorer = onnx_model.OnnxScorer(
        onnx_model.session(onnx_model.convert(model, x).model.SerializeToString())
    )
    for bad in (np.nan, 2.5):
        columns = {c: x[c].to_numpy() for c in FEATURE_COLUMNS}
        columns[FEATURE_COLUMNS[0]] = columns[FEATURE_COLUMNS[0]].astype(float)
        columns[FEATURE_COLUMNS[0]][17] = bad
        with pytest.raises(ValueError, match=f"'{FEATURE_COLUMNS[0]}' must hold whole numbers"):
            scorer(columns)


def test_parity_names_the_customer_where_the_runtimes_disagree(features):
    x, y = features
    model = build_estimator(ChurnModelConfig()).fit(x, y)
    honest = onnx_model.OnnxScorer(
        onnx_model.session(onnx_model.convert(model, x).model.SerializeToString())
    )

    def off_by_a_little(columns):
        probability = honest(columns)
        probability[np.asarray(columns[FEATURE_COLUMNS[1]]) == x[FEATURE_COLUMNS[1]][1234]] += 2e-6
        return probability

    parity = onnx_model.parity(model, off_by_a_little, batches(x))
    assert not parity.holds
    assert parity.worst_customer == "c1234" and parity.max_abs_diff == pytest.approx(2e-6)


@pytest.mark.parametrize(
    "model",
    [
        FutureClassifier(max_iter=5000),
        make_pipeline(FunctionTransformer(np.tanh), StandardScaler(), LogisticRegression()),
    ],
    ids=["an estimator without a converter", "a transform without an ONNX equivalent"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # raw Cauchy features
def test_a_model_without_a_conversion_says_why(features, model):
    x, y = features
    with pytest.raises(onnx_model.NotConvertible) as raised:
        onnx_model.convert(model.fit(x, y), x)
    assert "FutureClassifier" in str(raised.value) or "tanh" in str(raised.value)


def test_the_mlflow_folder_loads_with_pyfunc_and_its_hash_is_the_files(features, tmp_path):
    x, y = features
    model = build_estimator(ChurnModelConfig()).fit(x, y)
    folder = tmp_path / onnx_model.ONNX_ARTIFACT_DIR
    sha256 = onnx_model.save_folder(onnx_model.convert(model, x), x, folder)
    assert sha256 == hashlib.sha256((folder / onnx_model.ONNX_FILE).read_bytes()).hexdigest()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("model")) == [
        "model.onnx"  # one file: no external tensors outside the hash
    ]
    predicted = mlflow.pyfunc.load_model(str(folder)).predict(x)
    assert list(predicted.columns) == [onnx_model.OUTPUT]
    expected = churn_probability(model, x)
    assert np.abs(predicted[onnx_model.OUTPUT].to_numpy() - expected).max() <= 1e-12
