/**
 * Streams whose last ID is the largest possible.
 *
 * Every entry this package writes gets its ID from Redis (`XADD *`): the time, then a sequence.
 * Whoever can write to a stream can also give an explicit ID, and one entry at
 * `18446744073709551615-18446744073709551615` leaves no ID above it: every later `XADD *` fails
 * ("The stream has exhausted the last possible ID", or, before Redis 7, "The ID specified in XADD
 * is equal or smaller than the target stream top item"). Deleting that entry does not help, since
 * a stream remembers its last ID; and a worker that read it has moved the consumer group's
 * last-delivered ID there too, so that entries added afterwards would never be delivered.
 *
 * The repair runs inside the script whose `XADD *` failed, so it is atomic with it, and only then
 * (a healthy stream never pays for it). It must neither lose nor duplicate a request:
 * - Entries ahead of Redis's clock are the ones in the way. A healthy stream has none (`XADD *`
 *   never runs ahead of the clock unless the stream already held such an entry), so they are the
 *   poison, or requests that a frontend added after it (they were given IDs above it).
 * - Those a worker has not yet read (above the group's last-delivered ID) are added again, fields
 *   unchanged, under fresh IDs: delivered once, later. Those already read are only deleted: the
 *   worker that holds them runs and answers them, and its XACK and XDEL of a deleted entry are
 *   harmless. (If that worker dies before answering, the entry is not taken over: the same
 *   at-most-once as an aborted call. This is the one trade-off, for entries a worker read from a
 *   stream someone had already corrupted.)
 * - The stream's last ID goes back to the newest entry left, or the furthest any group has read if
 *   that is further and not ahead of the clock; every group that had read beyond it is set back to
 *   it. Nothing at or below it is undelivered, so no entry is delivered twice or skipped.
 * A reply stream has no group: all its displaced entries are added again (a frontend drops an
 * answer it has already had).
 *
 * Redis IDs are two 64-bit integers, beyond Lua's exact numbers: they are compared as digit strings.
 */
export const REPAIR_LUA = `
local function bfn_cmp_num(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function bfn_cmp_id(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  local c = bfn_cmp_num(am, bm)
  if c ~= 0 then return c end
  return bfn_cmp_num(as, bs)
end
local function bfn_exhausted(reply)
  return type(reply) == 'table' and reply.err ~= nil and
    (string.find(reply.err, 'exhausted the last possible ID', 1, true) ~= nil or
     string.find(reply.err, 'equal or smaller than the target stream top item', 1, true) ~= nil)
end
-- Returns how many entries were ahead of the clock (moved or dropped).
local function bfn_repair(key, group)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local clock = string.format('%.0f', now) .. '-18446744073709551615'
  local ahead = string.format('%.0f', now + 1) .. '-0'
  local groups = {}
  local delivered = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    groups[#groups + 1] = { name, last }
    if name == group then delivered = last end
  end
  local again = {}
  local displaced = 0
  while true do
    local batch = redis.call('XRANGE', key, ahead, '+', 'COUNT', 100)
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      if bfn_cmp_id(entry[1], delivered) > 0 then again[#again + 1] = entry[2] end
      redis.call('XDEL', key, entry[1])
      displaced = displaced + 1
    end
  end
  local last = '0-0'
  local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if top[1] then last = top[1][1] end
  for _, g in ipairs(groups) do
    if bfn_cmp_id(g[2], clock) <= 0 and bfn_cmp_id(g[2], last) > 0 then last = g[2] end
  end
  redis.call('XSETID', key, last)
  for _, g in ipairs(groups) do
    if bfn_cmp_id(g[2], last) > 0 then redis.call('XGROUP', 'SETID', key, g[1], last) end
  end
  for _, fields in ipairs(again) do
    -- An entry too odd to add again was never a frontend's: it is dropped, and must not stop the
    -- entries after it from being added again. redis.pcall catches Redis's errors only; with
    -- thousands of fields, unpack itself raises a Lua error ("too many results to unpack") before
    -- XADD is even called, so the loop goes under a Lua pcall. (An entry of 10,000 values ahead
    -- of the requests in the way made the repair fail halfway: they had been deleted, never added
    -- again, and their callers waited for their timeouts.)
    pcall(function() redis.pcall('XADD', key, '*', unpack(fields)) end)
  end
  return displaced
end
-- The repair, or an error that still says the stream is exhausted (with why the repair failed),
-- so that the caller's message can give the recovery by hand.
local function bfn_try_repair(key, group)
  local ok, result = pcall(bfn_repair, key, group)
  if ok then return result end
  local why = type(result) == 'table' and result.err or tostring(result)
  return redis.error_reply('ERR the stream has exhausted the last possible ID and its repair failed: ' .. why)
end
`;

/** The errors of an `XADD *` into a stream whose last ID is the largest possible (Redis 7, and earlier). */
export const EXHAUSTED = /exhausted the last possible ID|equal or smaller than the target stream top item/;

/** The warning a repair emits: once per repair, which someone writing into the stream caused. */
export function warnRepaired(key: string, displaced: number): void {
  process.emitWarning(
    `Redis stream ${key} had an entry with the largest possible ID (batched-fn writes only XADD * IDs: someone else wrote it), which stops every XADD *. ` +
      `Repaired: ${displaced} entr${displaced === 1 ? 'y' : 'ies'} ahead of Redis's clock moved or dropped, the stream's last ID and its consumer group set back.`,
    { code: 'BFN_STREAM_REPAIRED' },
  );
}

/** What to tell a caller (or log, for a reply stream) if even the repair failed: the cause, and the recovery by hand. */
export const exhaustedMessage = (key: string, cause: string, group?: string): string =>
  `Redis stream ${key} takes no more entries: its last ID is the largest possible (an entry written with an explicit ID, not by batched-fn), and the automatic repair failed (${cause}). ` +
  `To recover: XDEL the entries ahead of Redis's clock, XSETID ${key} to its newest entry left` +
  (group === undefined ? '' : `, and XGROUP SETID ${key} ${group} to the same ID if the group had read further`) +
  `; or DEL ${key} (losing what waits in it).`;
