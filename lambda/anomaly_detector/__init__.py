"""Regression-residual anomaly detection for industrial machine data.

The modules imported by the Lambda handler use only the standard library, boto3, numpy,
pandas and Powertools for AWS Lambda. Training, figures and the command line live in
``local_model``, ``plots`` and ``cli``, which the handler never imports.
"""

__version__ = "0.1.0"
