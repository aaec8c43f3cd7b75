"""read_lfw_pairs on pairs files written by the test, in LFW's two header formats."""

import numpy as np
import pytest

from jaxvision._src.data import lfw


def test_pairs_txt_with_folds(tmp_path):
    text = "2\t2\n"
    text += "Abel_Pacheco\t1\t4\nAkhmed_Zakayev\t1\t3\n"
    text += "Abdel_Madi_Shabneh\t1\tDean_Barker\t1\n"
    text += "Abdel_Madi_Shabneh\t1\tGiancarlo_Fisichella\t1\n"
    text += "Ann_Veneman 2 11\nAnn_Veneman 3 5\n"  # spaces work too
    text += "A_B\t1\tC_D\t2\nE_F\t3\tG_H\t4\n"
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    pairs = lfw.read_lfw_pairs(path, image_root="/data/lfw")
    assert pairs.first[0] == "/data/lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert pairs.second[0] == "/data/lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg"
    assert pairs.second[3] == "/data/lfw/Giancarlo_Fisichella/Giancarlo_Fisichella_0001.jpg"
    assert pairs.second[4].endswith("Ann_Veneman_0011.jpg")
    np.testing.assert_array_equal(pairs.same, [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pairs.folds, [0, 0, 0, 0, 1, 1, 1, 1])


def test_view1_header_and_errors(tmp_path):
    path = tmp_path / "pairsDevTest.txt"
    path.write_text("1\nX\t1\t2\nX\t1\tY\t1\n")
    pairs = lfw.read_lfw_pairs(path, ext=".png")
    assert pairs.first == ["X/X_0001.png", "X/X_0001.png"] and pairs.second[1] == "Y/Y_0001.png"
    path.write_text("1\nX\t1\t2\n")
    with pytest.raises(ValueError, match="found 1"):
        lfw.read_lfw_pairs(path)
    path.write_text("1\nX\t1\t2\nX\t1\n")
    with pytest.raises(ValueError, match=":3: expected 3 or 4 fields"):
        lfw.read_lfw_pairs(path)
