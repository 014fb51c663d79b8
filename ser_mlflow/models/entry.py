"""Models-from-code entry: MLflow executes this file to obtain the pyfunc model.

Logging the model as code (not a cloudpickle of an object) keeps it loadable across
Python and library versions and avoids deserialising arbitrary objects.
"""

import mlflow.models

from ser_mlflow.models.pyfunc import SERModel

mlflow.models.set_model(SERModel())
