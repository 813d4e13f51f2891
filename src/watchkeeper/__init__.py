"""watchkeeper: streaming drift, accuracy and fairness monitoring for ML models on Kafka."""

__version__ = "0.1.0"
