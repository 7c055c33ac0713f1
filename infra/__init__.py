"""CDK infrastructure of the anomaly-detection service: one construct per concern."""
