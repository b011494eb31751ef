"""One weight-file lookup (modrwkv.weights) and one exception type for backbone and encoder files."""

import pytest

from modrwkv.backbone.factory import WeightFileMissing as BackboneMissing
from modrwkv.encoders import WeightsNotFoundError
from modrwkv.weights import WeightFileMissing, resolve_checkpoint, resolve_weight_file


def test_one_exception_type_for_every_weight_file(tmp_path):
    assert BackboneMissing is WeightFileMissing is WeightsNotFoundError
    assert issubclass(WeightFileMissing, FileNotFoundError)
    with pytest.raises(WeightFileMissing, match="rwkv.pth"):
        resolve_checkpoint("rwkv.pth", tmp_path)
    with pytest.raises(WeightFileMissing, match="enc.pt"):
        resolve_weight_file(tmp_path, "enc", ("enc.pt",))


def test_files_are_found_where_the_config_says(tmp_path):
    (tmp_path / "rwkv.pth").write_bytes(b"")
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "enc.pt").write_bytes(b"")
    assert resolve_checkpoint("rwkv.pth", tmp_path) == tmp_path / "rwkv.pth"
    assert resolve_checkpoint(tmp_path / "rwkv.pth", None) == tmp_path / "rwkv.pth"
    assert resolve_weight_file(tmp_path, "enc", ("enc.pt",)) == tmp_path / "enc" / "enc.pt"
