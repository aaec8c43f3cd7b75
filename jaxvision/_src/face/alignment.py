"""Five-point face alignment onto the ArcFace template (insightface's ``norm_crop``)."""

from __future__ import annotations

import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import REGISTRY, Endpoint, export
from jaxvision._src.geometry import affine, checks, similarity

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # left eye (as seen in the image)
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float32,
)
ARCFACE_TEMPLATE.setflags(write=False)
# A constant has no __name__ for @export; it is registered directly.
REGISTRY.add(Endpoint("face.ARCFACE_TEMPLATE", __name__, "ARCFACE_TEMPLATE", ARCFACE_TEMPLATE))


@export("face.arcface_template")
def arcface_template(size: int = 112) -> np.ndarray:
    """The five ArcFace landmarks ``[5, 2]`` ``(x, y)`` for a ``size x size`` crop.

    ``ARCFACE_TEMPLATE`` is the 112 x 112 template of insightface (``arcface_dst``), in
    OpenCV's pixel-centre convention (see ``geometry.warp_affine``). Other sizes follow
    insightface's ``estimate_norm``: a multiple of 128 scales the template by ``size / 128``
    and shifts it right by ``8 size / 128``; any other size scales it by ``size / 112``
    (small crops for CPU experiments).

    Args:
      size: the crop side, a positive int.

    Returns:
      ``[5, 2]`` float32 NumPy landmarks (left eye, right eye, nose, left and right mouth
      corners).

    Raises:
      ValueError: ``size`` is not a positive int.

    Examples:
      >>> from jaxvision import face
      >>> face.arcface_template(224)[0]
      array([ 76.5892, 103.3926], dtype=float32)
    """
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"`size` must be a positive int, got {size!r}")
    if size % 128 == 0 and size % 112 != 0:
        ratio = np.float32(size / 128)
        return (ARCFACE_TEMPLATE * ratio + np.array([8 * ratio, 0], np.float32)).astype(np.float32)
    return (ARCFACE_TEMPLATE * np.float32(size / 112)).astype(np.float32)


@export("face.align_faces")
def align_faces(
    images: ArrayLike, landmarks: ArrayLike, size: int = 112, *, border_value: float = 0.0
) -> tuple[Array, Array]:
    """Crops faces onto the ArcFace template by the similarity their 5 landmarks give.

    For each face the similarity transform (Umeyama, ``geometry.estimate_similarity``)
    taking ``landmarks`` onto ``arcface_template(size)`` is estimated and the image warped
    by it (``geometry.warp_affine``: bilinear, constant border, OpenCV pixel centres), as
    insightface's ``face_align.norm_crop``. Differentiable in images and landmarks; works
    under ``jit`` (``size`` static) and ``vmap``.

    Args:
      images: ``[..., H, W, C]`` images.
      landmarks: ``[..., 5, 2]`` ``(x, y)`` landmarks in the template's order (left eye,
        right eye, nose, left and right mouth corners, as seen in the image); leading
        dimensions broadcast with those of ``images`` (several faces of one image:
        ``images [H, W, C]`` with ``landmarks [F, 5, 2]``).
      size: the crop side (see ``arcface_template``).
      border_value: the value outside the source image.

    Returns:
      ``(crops [..., size, size, C], matrices [..., 2, 3])``: the aligned faces (floating
      point) and the source -> crop similarity of each, which also maps other points of the
      image into the crop (``geometry.apply_affine``).

    Raises:
      ValueError: ``landmarks`` is not ``[..., 5, 2]``, or as ``warp_affine``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import face
      >>> image = jnp.zeros((224, 224, 3))
      >>> crops, m = face.align_faces(image, 2 * face.ARCFACE_TEMPLATE)  # a face at 2x scale
      >>> crops.shape, m.round(4) + 0.0
      ((112, 112, 3), Array([[0.5, 0. , 0. ],
             [0. , 0.5, 0. ]], dtype=float32))
    """
    points = checks.as_points(landmarks, "landmarks")
    if points.shape[-2] != 5:
        raise ValueError(f"`landmarks` must be [..., 5, 2], got shape {points.shape}")
    matrices = similarity.estimate_similarity(points, arcface_template(size))
    crops = affine.warp_affine(images, matrices, (size, size), border_value=border_value)
    return crops, matrices
