"""Instance segmentation: the training parts of the ``instance_segmentation`` task.

The detection task with masks on: Mask R-CNN models of the detector catalog, objects from the
project's ``polygon`` and ``mask_rle`` annotations (their box computed from the mask), masks
rasterised at the decoded image's size and augmented together with the image and the boxes. Besides
the box metrics, validation reports the mask mAP (``val_mask_map``, ``val_mask_map50``,
``val_mask_map75``, pycocotools' ``segm`` evaluation), which is the default monitored metric.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from vistudio.ml.tasks import register_training
from vistudio.ml.tasks.detection import DetectionConfig, DetectionTask
from vistudio.ml.training.config import TrainConfig


class InstanceSegmentationConfig(DetectionConfig):
    """The detection keys, with a Mask R-CNN by default."""

    model: str = Field(
        default="maskrcnn_resnet50_fpn", max_length=64, description="a Mask R-CNN model of the catalog"
    )
    image_size: int = Field(
        default=512, ge=32, le=2048, description="images are resized to this side (min_size = max_size)"
    )
    batch_size: int = Field(default=4, ge=1, le=1024)


@register_training("instance_segmentation")
class InstanceSegmentationTask(DetectionTask):
    name = "instance_segmentation"
    config_model: ClassVar[type[TrainConfig]] = InstanceSegmentationConfig
    default_monitor = "val_mask_map"
    masks = True
    object_words = "polygons or masks"
