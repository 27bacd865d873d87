"""The training pipeline: sample configurations, label them with PySCF, train, evaluate."""
