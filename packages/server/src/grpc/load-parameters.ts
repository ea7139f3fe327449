import { invalidArgument } from '../protocol/errors.js';
import { type LoadParameters, quoteParameter as quote } from '../protocol/load-parameters.js';
import type { GrpcParameter } from './proto.js';

/** A RepositoryModelLoadRequest's `parameters` map: `config` a string_param, `file:` parameters bytes_param. */
export function grpcLoadParameters(map: Record<string, GrpcParameter> | undefined): LoadParameters {
  const out: LoadParameters = { files: [] };
  for (const [name, parameter] of Object.entries(map ?? {})) {
    const choice = parameter?.parameter_choice;
    if (name === 'config') {
      if (choice !== 'string_param')
        throw invalidArgument("invalid value type for load parameter 'config', expected string_param.");
      out.config = parameter.string_param ?? '';
    } else if (name.startsWith('file:')) {
      if (choice !== 'bytes_param')
        throw invalidArgument(`invalid value type for load parameter '${quote(name)}', expected bytes_param.`);
      out.files.push({ parameter: name, bytes: parameter.bytes_param ?? Buffer.alloc(0) });
    } else {
      throw invalidArgument(`unrecognized load parameter '${quote(name)}'.`);
    }
  }
  return out;
}
