"""The model half of the graph: train, evaluate and register the churn model in MLflow."""
