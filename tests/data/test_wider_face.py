"""read_wider_face on fixtures written here (RetinaFace label.txt and the original list)."""

import numpy as np
import pytest

from jaxvision import data

FACE_1 = (
    "449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 "
    "485.727 434.375 0.0 538.799 435.872 0.0 0.82"
)
FACE_2 = (
    "361 98 263 339 424.143 251.656 0.0 547.134 232.571 0.0 494.121 325.875 0.0 "
    "453.83 368.286 0.0 561.978 342.839 0.0 0.89"
)
RETINAFACE = f"""\
# 0--Parade/0_Parade_marchingband_1_849.jpg
{FACE_1}
# 0--Parade/0_Parade_Parade_0_904.jpg
{FACE_2}
78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 1--Handshaking/empty.jpg
# 2--Demonstration/val_style.jpg
10 20 5 6

"""

ORIGINAL = """\
0--Parade/0_Parade_marchingband_1_849.jpg
1
449 330 122 149 0 0 0 0 0 0
0--Parade/0_Parade_Parade_0_452.jpg
0
0 0 0 0 0 0 0 0 0 0
0--Parade/0_Parade_Parade_0_904.jpg
2
361 98 263 339 0 0 0 0 0 0
78 221 7 8 2 0 0 1 0 0
"""


def test_retinaface_label_txt(tmp_path):
    f = tmp_path / "label.txt"
    f.write_text(RETINAFACE)
    images = data.read_wider_face(f, image_root=tmp_path / "images")
    assert [len(a) for a in images] == [1, 2, 0, 1]
    assert images[0].path == str(tmp_path / "images" / "0--Parade/0_Parade_marchingband_1_849.jpg")
    np.testing.assert_allclose(images[0].boxes, [[449, 330, 571, 479]])
    np.testing.assert_allclose(images[1].landmarks[0, 2], [494.121, 325.875], rtol=1e-6)
    np.testing.assert_array_equal(images[1].landmark_valid, [True, False])
    assert np.all(images[1].landmarks[1] == -1)
    assert not images[3].landmark_valid[0]
    targets = data.pad_faces(images, 2)
    assert targets.boxes.shape == (4, 2, 4) and targets.landmarks.shape == (4, 2, 5, 2)
    np.testing.assert_array_equal(targets.valid, [[1, 0], [1, 1], [0, 0], [1, 0]])
    np.testing.assert_array_equal(targets.landmark_valid, [[1, 0], [1, 0], [0, 0], [0, 0]])


def test_original_list(tmp_path):
    f = tmp_path / "wider_face_train_bbx_gt.txt"
    f.write_text(ORIGINAL)
    images = data.read_wider_face(f)
    assert [len(a) for a in images] == [1, 0, 2]
    np.testing.assert_allclose(images[2].boxes[1], [78, 221, 85, 229])
    np.testing.assert_array_equal(images[2].invalid, [False, True])
    assert not images[2].landmark_valid.any()


@pytest.mark.parametrize(
    "text, line",
    [
        (RETINAFACE.replace("78 221 7 8", "\n78 221 7 8"), 5),
        ("# a.jpg\n1 2 3 4\n\n# b.jpg\n", 3),
        (ORIGINAL.replace("0--Parade/0_Parade_Parade_0_904.jpg\n", "\n"), 7),
    ],
)
def test_empty_annotation_line_named_with_its_number(tmp_path, text, line):
    f = tmp_path / "label.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=rf"label.txt:{line}: empty annotation line"):
        data.read_wider_face(f)


def test_malformed_lines(tmp_path):
    f = tmp_path / "label.txt"
    f.write_text("# a.jpg\n1 2 3\n")
    with pytest.raises(ValueError, match=r"label.txt:2: expected 4 .* got 3"):
        data.read_wider_face(f)
    f.write_text("# a.jpg\n1 2 x 4\n")
    with pytest.raises(ValueError, match=r"label.txt:2: expected numbers"):
        data.read_wider_face(f)
    f.write_text("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="file ends"):
        data.read_wider_face(f)
