"""`fusion` finds imported predictions by the Devel labels they were scored on.

Before, an imported run carried only the digest of the folder around its labels, so
`fusion --data-root X` found it only when X happened to be that very folder. Real AVEC
2019 baseline predictions (../shared), labels copied to a data root of their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ser_mlflow.cli import main
from ser_mlflow.jobs import latefusion

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "avec2019_ces_devel"
pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")


def test_imported_runs_are_found_by_their_labels(tracking_store: str, tmp_path: Path) -> None:
    for system in ("visual-func", "egemaps-func_STD"):
        latefusion.import_predictions(
            predictions=SHARED_DATA / "predictions" / system, labels=SHARED_DATA / "labels",
            name=system, echo=lambda s: None)
    root = tmp_path / "my-corpus"  # another folder, other content, the same Devel labels
    shutil.copytree(SHARED_DATA / "labels", root / "labels")
    (root / "fau").mkdir()
    res = latefusion.run_fusion(data_root=root, protocol="paper", n_stages=1, contexts="1",
                                complexities="1", echo=lambda s: None)
    assert len(res.input_runs) == 2

    other = tmp_path / "other"  # labels nobody scored on: one readable line
    shutil.copytree(SHARED_DATA / "labels", other / "labels")
    label = next((other / "labels").glob("Devel_*.csv"))
    label.write_text(label.read_text().replace("0.", "0.0", 1))
    out = CliRunner().invoke(main, ["fusion", "--data-root", str(other)])
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert out.output.startswith(
        f"error: data_root: no FINISHED unimodal, bimodal or imported run with "
        f"'devel_ccc_mean' on {other}")
    assert "import-predictions --labels" in out.output and "tags." not in out.output
