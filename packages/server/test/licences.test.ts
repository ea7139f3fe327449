import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

// What the licences require of what we ship: the BSD 3-Clause notice and conditions kept in each file derived from
// Triton, the Apache-2.0 notice in the one derived from KServe, and both licence texts shipped with the package.
const root = fileURLToPath(new URL('../../..', import.meta.url));
const read = (path: string): string => readFileSync(`${root}/${path}`, 'utf8');
/** A .proto file's header: its comment lines before `syntax`. */
const header = (path: string): string => read(path).slice(0, read(path).indexOf('syntax = "proto3";'));
const BSD_CONDITION = 'Redistributions of source code must retain the above copyright';
const BSD_DISCLAIMER = 'OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.';

test('the repository has an MIT LICENSE, the one each package ships', () => {
  expect(read('LICENSE')).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} batched-fn contributors\n/);
  for (const pkg of ['batched-fn', 'server', 'redis']) {
    expect(read(`packages/${pkg}/package.json`)).toContain('"license": "MIT"');
    expect(read(`packages/${pkg}/LICENSE`)).toMatch(/^MIT License\n/);
  }
});

test('grpc_service.proto names its upstream files and licences, and keeps their notices', () => {
  const text = header('packages/server/proto/grpc_service.proto');
  expect(text).not.toContain('This file: MIT');
  expect(text).toContain('triton-inference-server/common, protobuf/grpc_service.proto');
  expect(text).toContain('Copyright 2020-2024, NVIDIA CORPORATION & AFFILIATES. All rights reserved.');
  expect(text).toContain(BSD_CONDITION);
  expect(text).toContain(BSD_DISCLAIMER);
  expect(text).toContain('docs/predict-api/v2/grpc_predict_v2.proto');
  expect(text).toContain('specification/protocol/open_inference_grpc.proto');
  expect(text).toContain('Copyright 2020 kubeflow.org.');
  expect(text).toContain('Copyright 2023 The KServe Authors.');
  expect(text).toContain('Licensed under the Apache License, Version 2.0');
  expect(text).toContain('THIRD_PARTY_NOTICES.md');
});

test("model_config.proto names its upstream file and keeps NVIDIA's and TensorFlow's notices", () => {
  const text = header('packages/server/proto/model_config.proto');
  expect(text).toContain('triton-inference-server/common, protobuf/model_config.proto');
  expect(text).toContain('Copyright 2018-2026, NVIDIA CORPORATION & AFFILIATES. All rights reserved.');
  expect(text).toContain('Copyright (c) 2018, TensorFlow Authors. All rights reserved.');
  expect(text).toContain(BSD_CONDITION);
  expect(text).toContain(BSD_DISCLAIMER);
  expect(text).toContain('THIRD_PARTY_NOTICES.md');
});

test('the server package ships both protos and THIRD_PARTY_NOTICES.md with both licence texts', () => {
  const notices = read('packages/server/proto/THIRD_PARTY_NOTICES.md');
  expect(notices).toContain(BSD_CONDITION);
  expect(notices).toContain('Neither the name of NVIDIA CORPORATION nor the names of its');
  expect(notices).toContain(BSD_DISCLAIMER);
  expect(notices).toContain('Apache License\n                           Version 2.0, January 2004');
  expect(notices).toContain('END OF TERMS AND CONDITIONS');
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  const packed = execFileSync('npm', ['pack', '--dry-run', '--json', '--workspace', '@batched-fn/server'], {
    cwd: root,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const paths = (JSON.parse(packed) as [{ files: { path: string }[] }])[0].files.map((file) => file.path);
  for (const path of [
    'LICENSE',
    'proto/grpc_service.proto',
    'proto/model_config.proto',
    'proto/THIRD_PARTY_NOTICES.md',
  ]) {
    expect(paths).toContain(path);
  }
}, 60_000);
