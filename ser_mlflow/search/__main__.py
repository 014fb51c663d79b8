"""``python -m ser_mlflow.search worker ...``: join a running search (the command of the
local worker processes and of deploy/kubernetes/search-workers.yaml).

The same command as ``ser-mlflow search-worker``; its options and error handling live
there.
"""

import click

from ser_mlflow.cli.search import search_worker

if __name__ == "__main__":
    click.Group(commands={"worker": search_worker})(prog_name="python -m ser_mlflow.search")
