"""The network and its training without MLflow: loss, Keras model, fit loop."""
