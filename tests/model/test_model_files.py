"""Model files are verified before use: damaged bytes, edited weights, stale metadata are refused; old files load."""

import io
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralct
from neuralct.cli import main
from neuralct.errors import NeuralCTError
from neuralct.model.molecular import project_positions
from neuralct.model.transformation import ModeRanking, content_digest

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: A kinetic model of alanine dipeptide (heavy atoms, --lag-ps 1, one coupling of width 4) written by
#: `neuralct train` in model format version 1, before files recorded a digest; with the CVs, frequencies
#: and relaxation times (ps) it gave then, on five frames of the whole system (nm).
MODEL_V1 = FIXTURES / "model_v1.pt"
EXPECTED_V1 = FIXTURES / "model_v1_expected.npz"
#: A maximum-likelihood model of alanine dipeptide (heavy atoms, --rank-lag-ps 1, modes ranked by
#: autocorrelation) written by `neuralct train` in model format version 2, before the package was
#: arranged in one folder per concept; with its CVs and frequencies on five frames (nm).
MODEL_V2 = FIXTURES / "model_v2.pt"
EXPECTED_V2 = FIXTURES / "model_v2_expected.npz"


def _entry_data(data: bytes, suffix: str) -> tuple[int, int]:
    """Offset and length of the stored bytes of the zip entry whose name ends with ``suffix``."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    # The local header's name and extra field lengths (torch pads the local extra field).
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length, info.file_size


def _weight_entry(path: Path, name: str) -> str:
    """The archive entry (``data/N``) that holds state_dict tensor ``name`` of a model file."""
    contents = torch.load(path, weights_only=True)
    target = contents["state_dict"][name].numpy().tobytes()
    data = path.read_bytes()
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        start, length = _entry_data(data, info.filename)
        if data[start : start + length] == target:
            return info.filename
    raise AssertionError(f"no entry holds {name}")


def test_a_version_1_model_file_loads_and_gives_the_cvs_it_gave():
    contents = torch.load(MODEL_V1, weights_only=True)
    assert contents["version"] == 1 and "sha256" not in contents  # the fixture is what older neuralct wrote
    expected = np.load(EXPECTED_V1)
    model = neuralct.load(MODEL_V1)
    # float32 CVs: the same to rounding (the order of a product's sums follows torch's thread count).
    np.testing.assert_allclose(
        project_positions(model, expected["positions_nm"]), expected["cvs"], rtol=1e-5, atol=1e-6
    )
    assert np.array_equal(model.frequencies.detach().numpy(), expected["frequencies"])
    assert np.array_equal(model.relaxation_times.detach().numpy(), expected["relaxation_times_ps"])


def test_a_version_2_model_file_ranked_by_autocorrelation_loads_and_gives_the_cvs_it_gave():
    contents = torch.load(MODEL_V2, weights_only=True)
    assert contents["version"] == 2 and contents["metadata"]["mode_ranking"]["by"] == "autocorrelation"
    expected = np.load(EXPECTED_V2)
    model = neuralct.load(MODEL_V2)
    assert model.ranked_by == "autocorrelation"
    np.testing.assert_allclose(
        project_positions(model, expected["positions_nm"]), expected["cvs"], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(model.frequencies.detach().numpy(), expected["frequencies"], rtol=1e-6)


def test_the_mode_ranking_is_model_state_saved_as_its_own_entry_under_the_digest(tmp_path):
    """A version-2 file kept the ranking in its metadata; the loaded model holds it, and saves it as version 3."""
    model = neuralct.load(MODEL_V2)
    stored = torch.load(MODEL_V2, weights_only=True)["metadata"]["mode_ranking"]
    assert model.mode_ranking == ModeRanking.from_dict(stored) and "mode_ranking" not in model.metadata
    assert model.mode_order().tolist() == stored["order"]
    model.save(tmp_path / "model.pt")
    contents = torch.load(tmp_path / "model.pt", weights_only=True)
    assert contents["version"] == 3 and contents["mode_ranking"] == stored
    assert "mode_ranking" not in contents["metadata"]
    positions = np.load(EXPECTED_V2)["positions_nm"]
    again = neuralct.load(tmp_path / "model.pt")
    assert again.mode_ranking == model.mode_ranking and again.ranked_by == "autocorrelation"
    assert np.array_equal(project_positions(again, positions), project_positions(model, positions))
    # The entry is covered by the digest: a changed figure, saved with valid checksums, is refused.
    contents["mode_ranking"]["autocorrelation"][0] *= 0.5
    torch.save(contents, tmp_path / "edited.pt")
    with pytest.raises(NeuralCTError, match="edited.pt is damaged or was altered.*SHA-256"):
        neuralct.load(tmp_path / "edited.pt")
    # A model without a ranking is written as version 2, which holds all of it.
    model.mode_ranking = None
    model.save(tmp_path / "unranked.pt")
    assert torch.load(tmp_path / "unranked.pt", weights_only=True)["version"] == 2
    assert neuralct.load(tmp_path / "unranked.pt").ranked_by == "frequency"


def test_model_file_records_a_digest_of_weights_and_metadata(tmp_path):
    model = neuralct.load(MODEL_V1)
    model.save(tmp_path / "model.pt")
    contents = torch.load(tmp_path / "model.pt", weights_only=True)
    assert contents["version"] == 2 and contents["sha256"] == content_digest(contents)
    again = neuralct.load(tmp_path / "model.pt")
    positions = np.load(EXPECTED_V1)["positions_nm"]
    assert np.array_equal(project_positions(again, positions), project_positions(model, positions))


def test_bytes_flipped_inside_the_weights_are_refused_by_every_command(tmp_path, capsys):
    """200 bytes of one weight tensor flipped in a copy: the zip CRC fails, and no command uses the file."""
    good = tmp_path / "model.pt"
    neuralct.load(MODEL_V1).save(good)
    data = bytearray(good.read_bytes())
    entry = _weight_entry(good, "flow.layers.0.A")
    start, length = _entry_data(bytes(data), entry)
    assert length >= 200
    for offset in range(start, start + 200):
        data[offset] ^= 0xFF
    tampered = tmp_path / "tamper.pt"
    tampered.write_bytes(bytes(data))
    with pytest.raises(NeuralCTError) as error:
        neuralct.load(tampered)
    text = str(error.value)
    assert "tamper.pt" in text and "CRC-32" in text and entry in text and "\n" not in text, text
    capsys.readouterr()
    for argv in (
        ["export", str(tampered), "--output", str(tmp_path / "export")],
        ["bias", str(tampered), "--output", str(tmp_path / "bias")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "tamper.pt is damaged" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "export").exists() and not (tmp_path / "bias").exists()


def _edit_weight(contents):
    weight = contents["state_dict"]["flow.layers.1.bijection.couplings.0.net.0.weight"]
    weight[0, 0] += 0.5


def _edit_range(contents):
    contents["metadata"]["cv_ranges"][0]["max"] *= 2


def _drop_digest(contents):
    del contents["sha256"]


@pytest.mark.parametrize(
    "edit", [_edit_weight, _edit_range, _drop_digest], ids=["weight", "cv range", "digest removed"]
)
def test_contents_edited_and_saved_again_with_valid_checksums_are_refused(tmp_path, edit):
    """Stored CV ranges that no longer belong to the weights (either side edited) are refused."""
    neuralct.load(MODEL_V1).save(tmp_path / "model.pt")
    contents = torch.load(tmp_path / "model.pt", weights_only=True)
    edit(contents)
    torch.save(contents, tmp_path / "edited.pt")
    assert zipfile.ZipFile(tmp_path / "edited.pt").testzip() is None
    with pytest.raises(NeuralCTError) as error:
        neuralct.load(tmp_path / "edited.pt")
    text = str(error.value)
    assert "edited.pt is damaged or was altered" in text and "SHA-256" in text and "\n" not in text, text


def test_a_truncated_model_file_is_refused(tmp_path):
    shutil.copy(MODEL_V1, tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(NeuralCTError, match="model.pt cannot be read as a neuralct model"):
        neuralct.load(tmp_path / "model.pt")


def test_the_digest_tells_apart_values_that_print_alike():
    base = {"a": 1, "b": [1.0, "x"], "t": torch.zeros(2)}
    variants = [
        {"a": 1.0, "b": [1.0, "x"], "t": torch.zeros(2)},
        {"a": True, "b": [1.0, "x"], "t": torch.zeros(2)},
        {"a": 1, "b": (1.0, "x"), "t": torch.zeros(2)},
        {"a": 1, "b": [1.0 + 2**-52, "x"], "t": torch.zeros(2)},
        {"a": 1, "b": [1.0, "x"], "t": torch.zeros(2, dtype=torch.float32)},
        {"a": 1, "b": [1.0, "x"], "t": torch.zeros(1, 2)},
        {"a": 1, "b": [1.0, "x"], "t": torch.tensor([0.0, -0.0])},
    ]
    digests = {content_digest(base)} | {content_digest(v) for v in variants}
    assert len(digests) == 1 + len(variants)
    assert content_digest(dict(reversed(list(base.items())))) == content_digest(base)
    assert content_digest({**base, "sha256": "anything"}) == content_digest(base)
