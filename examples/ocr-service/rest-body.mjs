// @ts-check
// The REST request for one image, with KServe's binary extension: the raw PNG/JPEG bytes, not base64 in JSON.

/**
 * The body and its JSON header's length (the `Inference-Header-Content-Length` header): the JSON header asking for
 * `text` and `boxes` as JSON, then the image as one BYTES element (a 4-byte little-endian length, the bytes).
 * @param {Uint8Array} bytes
 */
export function binaryBody(bytes) {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: bytes.length + 4 } }],
      outputs: [
        { name: 'text', parameters: { binary_data: false } },
        { name: 'boxes', parameters: { binary_data: false } },
      ],
    }),
  );
  const length = Buffer.alloc(4);
  length.writeUInt32LE(bytes.length);
  return { header: header.length, body: Buffer.concat([header, length, bytes]) };
}
