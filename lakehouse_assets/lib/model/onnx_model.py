"""The churn model as ONNX: a graph of data, not code, that onnxruntime evaluates in any language
without unpickling anything, converted from the fitted scikit-learn model with skl2onnx.

The graph takes one 1-D input per feature column, typed as the column (int64 or double), so that
MLflow's ONNX flavour feeds it a DataFrame column by column, and returns one output,
`churn_probability` (double). Steps skl2onnx has no converter for are written as ONNX here:
the arcsinh of `FunctionTransformer(np.arcsinh)` as sign(x) * log(|x| + sqrt(x^2 + 1)), since
onnxruntime's `Asinh` has no double kernel.
"""

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # onnx is imported when a model is converted, not with the code location
    import onnx

ONNX_ARTIFACT_DIR = "model_onnx"
ONNX_FILE = "model.onnx"
OUTPUT = "churn_probability"
NOT_CONVERTED = "not converted"  # how the `model_onnx` tag of a version without one starts
PARITY_TOLERANCE = 1e-6  # the largest |ONNX - pickle| probability accepted, on every customer
OPSET = 18  # the default domain's opset; onnxruntime 1.15+ runs it
ML_OPSET = 3  # ai.onnx.ml: TreeEnsemble* with double thresholds
_INPUT_TYPES = {np.dtype("int64"): "INT64", np.dtype("float64"): "DOUBLE"}


class NotConvertible(Exception):
    """The model, or one of its steps, has no ONNX conversion here."""


@dataclass(frozen=True)
class Converted:
    model: "onnx.ModelProto"
    precision: str  # "double", or "float" where the converters allow no double
    scorer: "OnnxScorer"  # the session that was checked on the example, to use again


# scikit-learn casts the features to float32 before these walk their trees: so does their graph.
FLOAT32_TREES = frozenset(
    {"DecisionTreeClassifier", "ExtraTreesClassifier", "RandomForestClassifier"}
)
# Converters whose graphs are known to disagree with scikit-learn, and how.
NOT_EXACT = {
    "HistGradientBoostingClassifier": "skl2onnx's graph splits differently from scikit-learn "
    "near bin thresholds, in double and in float (probabilities 0.04 to 0.08 apart on 5 to 315 "
    "of 25,000 customers at 10M transactions)",
}


def convert(model, example: pd.DataFrame) -> Converted:
    """The fitted `model` (a scikit-learn classifier or pipeline) as an ONNX graph with one input
    per column of `example`, in double precision, or in float for the trees that scikit-learn
    itself walks in float32; it must give `model`'s probabilities on `example`'s rows. Raises
    NotConvertible, saying why."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from lakehouse_assets.lib.model.scoring import churn_probability

    steps = [step for _, step in model.steps] if isinstance(model, Pipeline) else [model]
    leading = []
    while steps and isinstance(steps[0], FunctionTransformer):
        if steps[0].func is not np.arcsinh:
            raise NotConvertible(f"no ONNX equivalent of FunctionTransformer({steps[0].func!r})")
        leading.append(steps.pop(0))
    if not steps:
        raise NotConvertible("the pipeline has no estimator after its transforms")
    name = type(steps[-1]).__name__
    if name in NOT_EXACT:
        raise NotConvertible(f"{name}: {NOT_EXACT[name]}")
    rest = Pipeline([(f"step_{i}", s) for i, s in enumerate(steps)]) if len(steps) > 1 else steps[0]
    expected = churn_probability(model, example)
    problems = []
    for precision in ("float",) if name in FLOAT32_TREES else ("double", "float"):
        try:
            core = _skl2onnx(rest, steps[-1], len(example.columns), precision)
            graph = _with_columns(core, example, precision, arcsinh=bool(leading))
            # onnxruntime must have a kernel for every node, and agree on the example's rows.
            scorer = OnnxScorer(session(graph.SerializeToString()))
            scored = scorer(example)
        except Exception as error:  # noqa: BLE001 - any converter error means: try float, then say why
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            problems.append((precision, f"{type(error).__name__}: {first_line}"))
            continue
        difference = float(differences(scored, expected).max(initial=0.0))
        if difference <= PARITY_TOLERANCE:
            return Converted(graph, precision, scorer)
        problems.append((precision, f"probabilities differ by up to {difference:.3g}"))
    if len({problem for _, problem in problems}) == 1:
        raise NotConvertible(f"{name}: {problems[0][1]}")
    said = "; ".join(f"in {precision}, {problem}" for precision, problem in problems)
    raise NotConvertible(f"{name}: {said}")


def differences(onnx_p: np.ndarray, pickle_p: np.ndarray) -> np.ndarray:
    """|onnx_p - pickle_p| per row: 0 where both are NaN, infinite where only one is."""
    difference = np.abs(onnx_p - pickle_p)
    difference[np.isnan(onnx_p) & np.isnan(pickle_p)] = 0.0
    difference[np.isnan(difference)] = np.inf
    return difference


def _skl2onnx(model, estimator, width: int, precision: str):
    """skl2onnx's graph of `model` from one [N, width] tensor `features`, probabilities as a
    tensor (no ZipMap)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    tensor = DoubleTensorType if precision == "double" else FloatTensorType
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skl2onnx's notes on opsets and deprecated numpy types
        return to_onnx(
            model,
            initial_types=[("features", tensor([None, width]))],
            options={id(estimator): {"zipmap": False}},
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        )


def _with_columns(core, example: pd.DataFrame, precision: str, arcsinh: bool):
    """`core` fed from one 1-D input per column of `example` (cast, stacked, arcsinh if asked),
    its probability of class 1 as the one output `churn_probability` (double)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    matrix_type = TensorProto.DOUBLE if precision == "double" else TensorProto.FLOAT
    inputs, nodes, columns = [], [], []
    shape = numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "lakehouse_column_shape")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float64), "lakehouse_one")
    for name, dtype in example.dtypes.items():
        if np.dtype(dtype) not in _INPUT_TYPES:
            raise NotConvertible(f"column {name!r} has dtype {dtype}, not int64 or float64")
        kind = getattr(TensorProto, _INPUT_TYPES[np.dtype(dtype)])
        inputs.append(helper.make_tensor_value_info(str(name), kind, [None]))
        column = str(name)
        if kind != TensorProto.DOUBLE:  # counts; a same-type Cast would copy the column
            nodes.append(helper.make_node("Cast", [column], [f"{name}__d"], to=TensorProto.DOUBLE))
            column = f"{name}__d"
        nodes.append(helper.make_node("Reshape", [column, shape.name], [f"{name}__2d"]))
        columns.append(f"{name}__2d")
    nodes.append(helper.make_node("Concat", columns, ["lakehouse_x"], axis=1))
    x = "lakehouse_x"
    if arcsinh:  # asinh(x) = sign(x) * log(|x| + sqrt(x^2 + 1))
        nodes += [
            helper.make_node("Abs", [x], ["asinh_abs"]),
            helper.make_node("Mul", [x, x], ["asinh_sq"]),
            helper.make_node("Add", ["asinh_sq", one.name], ["asinh_sq1"]),
            helper.make_node("Sqrt", ["asinh_sq1"], ["asinh_root"]),
            helper.make_node("Add", ["asinh_abs", "asinh_root"], ["asinh_sum"]),
            helper.make_node("Log", ["asinh_sum"], ["asinh_log"]),
            helper.make_node("Sign", [x], ["asinh_sign"]),
            helper.make_node("Mul", ["asinh_sign", "asinh_log"], ["lakehouse_asinh"]),
        ]
        x = "lakehouse_asinh"
    if matrix_type == TensorProto.DOUBLE:
        nodes.append(helper.make_node("Identity", [x], ["features"]))  # onnxruntime drops it
    else:
        nodes.append(helper.make_node("Cast", [x], ["features"], to=matrix_type))
    probabilities = next(o.name for o in core.graph.output if o.name == "probabilities")
    index = numpy_helper.from_array(np.array(1, dtype=np.int64), "lakehouse_class_1")
    tail = [
        helper.make_node("Gather", [probabilities, index.name], ["churn_p"], axis=1),
        helper.make_node("Cast", ["churn_p"], [OUTPUT], to=TensorProto.DOUBLE),
    ]
    graph = helper.make_graph(
        nodes + list(core.graph.node) + tail,
        "churn_model",
        inputs,
        [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None])],
        initializer=[shape, one, index, *core.graph.initializer],
    )
    model = helper.make_model(graph, opset_imports=list(core.opset_import))
    model.ir_version = core.ir_version
    model.producer_name = "lakehouse-assets"
    model.doc_string = "P(churned) for each customer, from the columns of gold.scoring_features."
    onnx.checker.check_model(model, full_check=True)
    return model


def session(payload: bytes):
    """An onnxruntime session on the CPU for the serialized model `payload`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes on unused nodes
    return onnxruntime.InferenceSession(
        payload, sess_options=options, providers=["CPUExecutionProvider"]
    )


class OnnxScorer:
    """Churn probabilities from an onnxruntime session, fed column by column."""

    def __init__(self, onnx_session):
        self.session = onnx_session
        self.types = {
            i.name: np.int64 if i.type == "tensor(int64)" else np.float64
            for i in onnx_session.get_inputs()
        }

    def __call__(self, columns) -> np.ndarray:
        return self.session.run(
            [OUTPUT], {n: _feed(n, columns[n], k) for n, k in self.types.items()}
        )[0]


def _feed(name: str, column, kind) -> np.ndarray:
    """`column` as the input's type; a value that type cannot hold (a missing count, a
    fraction) is an error naming the column, never a silent cast."""
    values = np.asarray(column)
    if kind is np.int64 and values.dtype.kind == "f":
        whole = np.isfinite(values) & (values == np.round(values))
        if not whole.all():
            raise ValueError(
                f"feature column {name!r} must hold whole numbers (int64), but "
                f"{int((~whole).sum()):,} value(s) are missing or fractional, e.g. "
                f"{values[~whole][0]!r}"
            )
    return values.astype(kind, copy=False)


def save_folder(converted: Converted, example: pd.DataFrame, folder: Path) -> str:
    """Write an MLflow ONNX-flavour model folder (`MLmodel` with signature and input example,
    `model.onnx` in one file, requirements) into `folder`; return the SHA-256 of `model.onnx`."""
    import mlflow.onnx
    from mlflow.models import infer_signature

    head = example.head(5)
    output = pd.DataFrame({OUTPUT: converted.scorer(head)})
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings()
        ):  # integer columns cannot hold missing values: features never do
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(head, output)
        mlflow.onnx.save_model(
            converted.model,
            str(folder),
            signature=signature,
            input_example=head,
            pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            save_as_external_data=False,  # one file, one hash
            onnx_execution_providers=["CPUExecutionProvider"],  # not CUDA first: no GPU warning
        )
    finally:
        logger.setLevel(level)
    return hashlib.sha256((folder / ONNX_FILE).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Parity:
    customers: int
    max_abs_diff: float
    worst_customer: str | None  # where the largest difference is

    @property
    def holds(self) -> bool:
        return self.customers > 0 and self.max_abs_diff <= PARITY_TOLERANCE


def parity(model, scorer: OnnxScorer, batches) -> Parity:
    """The largest |ONNX - pickle| churn probability over every row of `batches` (Arrow record
    batches of `customer_id` and the feature columns)."""
    from lakehouse_assets.lib.features import FEATURE_COLUMNS
    from lakehouse_assets.lib.model.dataset import feature_frame
    from lakehouse_assets.lib.model.scoring import churn_probability

    customers, worst, worst_customer = 0, 0.0, None
    for batch in batches:
        columns = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in FEATURE_COLUMNS}
        pickle_p = churn_probability(model, feature_frame(columns, copy=False))
        difference = differences(scorer(columns), pickle_p)
        customers += batch.num_rows
        if batch.num_rows and difference.max() > worst:
            at = int(difference.argmax())
            worst, worst_customer = float(difference[at]), str(batch.column("customer_id")[at])
    return Parity(customers, worst, worst_customer)
