/**
 * Class vocabularies. Events carry ONE label vocabulary whatever model produced them (a "person" is "person"
 * from YOLOX, FastestDet or a user model), so zone rules and cloud queries do not depend on the model family.
 * The canonical names are the standard COCO ones; darknet-trained models (FastestDet) use older spellings
 * that are mapped here.
 */

/** The 80 COCO classes in the usual contiguous order (YOLOX, ultralytics). */
// prettier-ignore
export const COCO_CLASSES: readonly string[] = Object.freeze([
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
  'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
  'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
  'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
  'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
  'hair drier', 'toothbrush',
]);

/** Darknet spellings (coco.names) -> canonical COCO names; also a few common variants seen in user models. */
const ALIASES: Readonly<Record<string, string>> = {
  motorbike: 'motorcycle',
  aeroplane: 'airplane',
  sofa: 'couch',
  pottedplant: 'potted plant',
  diningtable: 'dining table',
  tvmonitor: 'tv',
  'tv monitor': 'tv',
  'hair dryer': 'hair drier',
  cellphone: 'cell phone',
};

const DARKNET_SPELLING: Readonly<Record<string, string>> = {
  motorcycle: 'motorbike',
  airplane: 'aeroplane',
  couch: 'sofa',
  'potted plant': 'pottedplant',
  'dining table': 'diningtable',
  tv: 'tvmonitor',
};

/** The same 80 classes as darknet's coco.names spells them (FastestDet's output order). */
export const DARKNET_COCO_CLASSES: readonly string[] = Object.freeze(
  COCO_CLASSES.map((n) => DARKNET_SPELLING[n] ?? n),
);

/**
 * A model's class name -> the event vocabulary: lower case, "_"/"-" as spaces, known aliases mapped.
 * Unknown names pass through normalised (a user model's "forklift" stays "forklift").
 */
export function canonicalLabel(name: string): string {
  const n = name.trim().toLowerCase().replace(/[_-]+/g, ' ').replace(/\s+/g, ' ');
  return ALIASES[n] ?? n;
}
