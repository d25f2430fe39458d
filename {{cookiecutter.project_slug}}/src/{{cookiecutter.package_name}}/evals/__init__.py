"""Evals as code: a golden set, retrieval and answer metrics, and a go/no-go gate."""
