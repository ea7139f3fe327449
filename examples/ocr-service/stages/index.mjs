// @ts-check
// The OCR stages, each a plain function with no model runtime in it: a server wires them around its own
// detector and recognizer models (a JS model for the detector's pre- and post-processing, the recognizer batched
// by width bucket, an `ocr` model calling both), and pipeline.mjs wires them around onnxruntime-node directly.
export { OcrImageError } from './errors.mjs';
export { DET_DEFAULTS, IMAGE_DEFAULTS, REC_DEFAULTS, detOptions, imageOptions, recOptions } from './params.mjs';
export { decodeImage, imageFormat } from './image.mjs';
export { detInputSize, detPreprocess } from './det-pre.mjs';
export { detPostprocess } from './det-post.mjs';
export { connectedRegions } from './regions.mjs';
export { boxRect, cropLine, lineWidth } from './crop.mjs';
export { bucketWidth, recBatch } from './rec-pre.mjs';
export { ctcDecode, loadClasses } from './ctc.mjs';
export { readingOrder } from './order.mjs';
export { writeBgrPlanes } from './planes.mjs';
