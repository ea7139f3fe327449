/**
 * Old names of settings, still read so that no user breaks: each is read as its new name, with one
 * warning per process (a DeprecationWarning, which `--no-deprecation` silences as Node's own do).
 * `queueCap` (`--queue-cap`) is `channelCap`, the name the core, the CLI, config.json and the
 * metrics share.
 */
export const OLD_NAMES = { queueCap: 'channelCap' } as const;

export type OldName = keyof typeof OLD_NAMES;

const warned = new Set<OldName>();

/**
 * Says, once per process, that the old setting `old` (spelled `spelled`: `--queue-cap` on the
 * command line, `queueCap` in options or a config.json) is deprecated, and what replaces it.
 */
export function warnDeprecated(old: OldName, spelled: string): void {
  if (warned.has(old)) return;
  warned.add(old);
  const now = OLD_NAMES[old];
  const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const replacement = spelled.startsWith('--') ? `--${kebab(now)}` : `\`${now}\``;
  const code = `BFN_DEP_${kebab(old).replace(/-/g, '_').toUpperCase()}`;
  process.emitWarning(
    `${spelled} is deprecated: use ${replacement}, ` +
      'the one name of this setting in the library, the CLI, config.json and the metrics',
    { type: 'DeprecationWarning', code },
  );
}

/**
 * `options` with each old name read as its new one (warned once); giving both is a RangeError, as
 * the two could disagree. `where` names what holds them (`startServer`, a config.json path).
 */
export function renameOldSettings<T extends object>(options: T, where: string): T {
  const given = options as Record<string, unknown>;
  let renamed: Record<string, unknown> | undefined;
  for (const [old, now] of Object.entries(OLD_NAMES) as [OldName, string][]) {
    if (given[old] === undefined) continue;
    if (given[now] !== undefined)
      throw new RangeError(`${where}: give \`${now}\` or its old name \`${old}\`, not both`);
    warnDeprecated(old, `\`${old}\``);
    const { [old]: value, ...rest } = renamed ?? given;
    renamed = { ...rest, [now]: value };
  }
  return (renamed ?? options) as T;
}
