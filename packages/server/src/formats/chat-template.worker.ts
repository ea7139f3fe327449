/**
 * Runs a generator's `chatTemplate(messages)` in a worker thread of its own (a batchedFn worker
 * module): the model's code never runs on the main thread, and a template that throws fails its
 * own request only.
 */
export interface ChatTemplateWorkerData {
  moduleUrl: string;
}

type Template = (messages: { role: string; content: string }[]) => unknown;

export async function context(data: ChatTemplateWorkerData): Promise<Template> {
  const module = (await import(data.moduleUrl)) as { chatTemplate?: unknown };
  if (typeof module.chatTemplate !== 'function') throw new TypeError(`${data.moduleUrl} exports no chatTemplate`);
  return module.chatTemplate as Template;
}

export function handler(batch: { role: string; content: string }[][], template: Template): (string | Error)[] {
  return batch.map((messages) => {
    try {
      const prompt = template(messages);
      return typeof prompt === 'string' ? prompt : new TypeError('chatTemplate must return a string');
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  });
}
