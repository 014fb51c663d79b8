"""The model classes MLflow loads (``pyfunc``), their models-from-code entry file and the
one owner of their metadata format (``metadata``)."""

from pathlib import Path

#: The file MLflow executes to build the model (``python_model=`` of every logged model).
ENTRY_FILE = Path(__file__).with_name("entry.py")
