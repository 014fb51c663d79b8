"""``python -m ser_mlflow.search worker ...``: join a running search (the command of the
local worker processes and of deploy/kubernetes/search-workers.yaml).

The same command as ``ser-mlflow search-worker``; its options and error handling live
there.
"""

from ser_mlflow.cli.errors import OneLineGroup
from ser_mlflow.cli.search import search_worker

if __name__ == "__main__":
    OneLineGroup(commands={"worker": search_worker})(prog_name="python -m ser_mlflow.search")
